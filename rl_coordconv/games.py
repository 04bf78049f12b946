"""The Atari game suite: names, ROM ids and reference scores.

Random and human scores are the standard references (Nature DQN and dueling DQN papers), used for
human-normalized scores: ``(score - random) / (human - random)``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Game:
    name: str  # the usual CamelCase name, e.g. "MsPacman"
    rom: str  # ale-py's snake_case ROM id, e.g. "ms_pacman"
    random_score: float
    human_score: float

    @property
    def sb3_env_id(self) -> str:
        """The gymnasium id SB3's ``make_atari_env`` uses (no frame skip, no sticky actions)."""
        return f"{self.name}NoFrameskip-v4"

    def human_normalized(self, score: float) -> float:
        return (score - self.random_score) / (self.human_score - self.random_score)


GAMES: dict[str, Game] = {
    game.name: game
    for game in (
        Game("MsPacman", "ms_pacman", 307.3, 6951.6),
        Game("Alien", "alien", 227.8, 7127.7),
        Game("Amidar", "amidar", 5.8, 1719.5),
        Game("BankHeist", "bank_heist", 14.2, 753.1),
        Game("Seaquest", "seaquest", 68.4, 42054.7),
        Game("SpaceInvaders", "space_invaders", 148.0, 1668.7),
        Game("Asterix", "asterix", 210.0, 8503.3),
        Game("Breakout", "breakout", 1.7, 30.5),
        Game("Pong", "pong", -20.7, 14.6),
    )
}


def get_game(name: str) -> Game:
    """Look a game up by its usual name ("MsPacman"); the error lists the suite."""
    try:
        return GAMES[name]
    except KeyError:
        raise ValueError(f"unknown game {name!r}; the suite is: {', '.join(GAMES)}") from None
