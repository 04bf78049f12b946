"""Every finished game's score in TensorBoard, against the agent step at which it ended."""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat
from torch.utils.tensorboard import SummaryWriter

from rl_coordconv.envs import Game


class EpisodeScoreCallback(BaseCallback):
    """Writes every finished game's full, unclipped score (and its human-normalized value) to
    TensorBoard against the agent step at which it ended: ``episode/score``,
    ``episode/human_normalized``, ``episode/length`` (agent steps); and ``episode/score_<band>``
    where the agent plays its envs in bands (the Ape-X agent's thirds of the epsilon ladder)."""

    def __init__(self, game: Game) -> None:
        super().__init__()
        self.game = game
        self._writer = None

    def _on_training_start(self) -> None:
        formats = [f for f in self.logger.output_formats if isinstance(f, TensorBoardOutputFormat)]
        self._writer = formats[0].writer if formats else None

    def _on_step(self) -> bool:
        if self._writer is None:
            return True
        score_band = getattr(self.model, "score_band", None)
        for index, info in enumerate(self.locals["infos"]):
            episode = info.get("episode")
            if episode is not None:
                band = score_band(index) if score_band is not None else None
                write_game_score(self._writer, self.game, self.num_timesteps, episode["r"], episode["l"], band)
        return True


def write_game_score(writer: SummaryWriter, game: Game, step: int, score: float, length: int, band: str | None = None) -> None:
    """A finished game's scalars at agent step ``step``: see :class:`EpisodeScoreCallback`."""
    writer.add_scalar("episode/score", score, step)
    if band is not None:
        writer.add_scalar(f"episode/score_{band}", score, step)
    writer.add_scalar("episode/human_normalized", game.human_normalized(score), step)
    writer.add_scalar("episode/length", length, step)
