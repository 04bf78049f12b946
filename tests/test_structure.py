"""The package's structure: one installed name, imports that point down only, no cycles, and
checkpoints of the version that installed ``agents`` and ``envs`` at the top level still load."""

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env

import rl_coordconv

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> installed package name (setup.py's package_dir).
PACKAGE_FOLDERS = {"rl_coordconv": "rl_coordconv", "agents": "rl_coordconv.agents", "envs": "rl_coordconv.envs"}
CORE = (
    "rl_coordconv",
    "rl_coordconv.layers",
    "rl_coordconv.extractors",
    "rl_coordconv.rundir",
    "rl_coordconv.devices",
    "rl_coordconv.games",
    "rl_coordconv.interrupts",
    "rl_coordconv.precision",
)
FIXTURE = ROOT / "tests" / "fixtures" / "apex_coordconv_goal_pixel_416_steps"


def module_name(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [PACKAGE_FOLDERS[folder], *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for folder in PACKAGE_FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))}


def runtime_imports(path: Path, *, type_only: bool = False) -> list[tuple[str, str | None]]:
    """(module, imported name or None) for every import that runs, at any depth: imports inside
    functions make cycles too; with ``type_only``, also those of ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped = (
        set()
        if type_only
        else {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
            for node in ast.walk(block)
        }
    )
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, alias.name) for alias in node.names]
    return found


def import_graph(*, type_only: bool = False) -> dict[str, set[str]]:
    """Edges from each package module to the package modules it imports (with ``type_only``,
    counting the imports made for type checkers alone)."""
    modules = package_modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        for module, imported in runtime_imports(path, type_only=type_only):
            target = f"{module}.{imported}" if f"{module}.{imported}" in modules else module
            if target in modules and not name.startswith(target + ".") and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def test_no_code_imports_a_top_level_agents_or_envs():
    offenders = []
    ours = [*PACKAGE_FOLDERS, "scripts", "tests"]  # not the venvs or build/ beside them
    for path in [ROOT / "setup.py", *(path for folder in ours for path in sorted((ROOT / folder).rglob("*.py")))]:
        for module, _ in runtime_imports(path):
            if module.split(".")[0] in ("agents", "envs"):
                offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert offenders == []


def test_test_modules_share_helpers_not_each_other():
    offenders = [
        f"{path.name}: {module}"
        for path in sorted((ROOT / "tests").glob("test_*.py"))
        for module, _ in runtime_imports(path)
        if module.startswith("test_")
    ]
    assert offenders == []  # shared code lives in tests/helpers.py and tests/conftest.py


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        (
            CORE,
            (
                "rl_coordconv.agents",
                "rl_coordconv.envs",
                "rl_coordconv.analysis",
                "rl_coordconv.supervised",
                "rl_coordconv.commands",
            ),
        ),
        (("rl_coordconv.envs",), ("rl_coordconv.agents", "rl_coordconv.commands")),
        (("rl_coordconv.agents",), ("rl_coordconv.commands",)),
        (("rl_coordconv.analysis",), ("rl_coordconv.agents", "rl_coordconv.envs", "rl_coordconv.commands")),
        (("rl_coordconv.supervised",), ("rl_coordconv.agents", "rl_coordconv.envs", "rl_coordconv.commands")),
    ],
)
def test_imports_point_down_only(layer, forbidden):
    graph = import_graph()
    members = [
        name for name in graph if any(name == top or (top != "rl_coordconv" and name.startswith(top + ".")) for top in layer)
    ]
    assert members
    wrong = sorted(
        f"{name} -> {target}"
        for name in members
        for target in graph[name]
        if any(target == bad or target.startswith(bad + ".") for bad in forbidden)
    )
    assert wrong == []


def test_no_import_cycles_not_even_through_imports_for_type_checkers():
    graph = import_graph(type_only=True)
    cycles, index, low, stack, on_stack, counter = [], {}, {}, [], set(), [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def test_only_the_trainer_choice_and_the_settings_check_tell_local_from_ray_training():
    """``distributed.enabled`` is read where the trainer is chosen and where settings are checked
    (the config's validation, the train command's options); the rest speaks the Trainer interface."""
    readers = set()
    for name, path in package_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "enabled"
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "distributed"
            ):
                readers.add(name)
    assert readers == {"rl_coordconv.agents.trainers", "rl_coordconv.agents.run_config", "rl_coordconv.commands.train"}
    settings = ast.parse((ROOT / "agents" / "run_config.py").read_text())
    (validate,) = [node for node in ast.walk(settings) if isinstance(node, ast.FunctionDef) and node.name == "validate"]
    in_validate = sum(isinstance(node, ast.Attribute) and node.attr == "enabled" for node in ast.walk(validate))
    in_module = sum(isinstance(node, ast.Attribute) and node.attr == "enabled" for node in ast.walk(settings))
    assert in_validate == in_module == 1


def test_the_wheel_installs_one_top_level_name(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("rl_coordconv-*.whl")
    assert wheel.name.startswith(f"rl_coordconv-{rl_coordconv.__version__}-py3"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"rl_coordconv", wheel.name.split("-py")[0] + ".dist-info"}
    for module in (
        "rl_coordconv/agents/apex.py",
        "rl_coordconv/agents/distributed/learner.py",
        "rl_coordconv/envs/atari.py",
        "rl_coordconv/analysis/report.py",
    ):
        assert module in names


def test_a_checkpoint_saved_under_the_old_names_loads_resumes_and_evaluates():
    from rl_coordconv.agents.apex import ApeX, DuelingCnnPolicy
    from rl_coordconv.agents.checkpoints import load_checkpoint
    from rl_coordconv.agents.replay import PrioritizedReplayBuffer
    from rl_coordconv.envs import GOAL_PIXEL_ID
    from rl_coordconv.layers import CoordConv2d

    env = make_vec_env(GOAL_PIXEL_ID, n_envs=4, seed=1, env_kwargs={"grid_size": 3, "max_steps": 12})
    model = load_checkpoint(ApeX, FIXTURE.with_suffix(".zip"), env=env, device="cpu")
    assert "agents" not in sys.modules and "envs" not in sys.modules  # the old names are gone again
    assert isinstance(model, ApeX) and isinstance(model.policy, DuelingCnnPolicy)
    assert model.replay_buffer_class is PrioritizedReplayBuffer
    assert isinstance(model.policy.q_net.features_extractor.cnn[0], CoordConv2d)
    assert model.num_timesteps == 416
    model.load_replay_buffer(FIXTURE.with_name(FIXTURE.name + "_replay.npz"))
    assert model.replay_buffer.size() > 0
    learner_steps = model.learner_steps
    model.learn(128, reset_num_timesteps=False)  # resumes: the same counters, more learning
    assert model.num_timesteps >= 416 + 128 and model.learner_steps > learner_steps
    actions, _ = model.predict(env.reset(), deterministic=True)
    assert actions.shape == (4,) and np.all((0 <= actions) & (actions < 4))


COMMAND_NAMES = ("train", "sweep", "compare", "evaluate", "records", "supervised", "demo")


def rl_coordconv_command() -> str:
    """The console script pip installed beside this interpreter."""
    return str(Path(sys.executable).with_name("rl-coordconv"))


def test_the_command_lists_its_subcommands_and_refuses_others():
    listed = subprocess.run([rl_coordconv_command(), "--help"], capture_output=True, text=True)
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.split("commands:\n")[1].splitlines() if line.startswith("  ")] == list(
        COMMAND_NAMES
    )
    unknown = subprocess.run([rl_coordconv_command(), "trian"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown command 'trian'; choose one of: train, sweep" in unknown.stderr


def test_each_subcommand_has_its_script_wrapper_of_the_same_name():
    for name in COMMAND_NAMES:
        wrapper = ROOT / "scripts" / f"{name}.py"
        assert wrapper.is_file(), f"scripts/{name}.py is missing"
        assert f"from rl_coordconv.commands.{name} import main" in wrapper.read_text()


@pytest.mark.parametrize(
    "name, option, default",
    [
        ("train", "--timesteps", "10000000"),
        ("train", "--seed", "0"),
        ("sweep", "--seeds", "0-2"),
        ("compare", "--baseline", "conv"),
        ("evaluate", "--episodes", "30"),
        ("supervised", "--checks-per-epoch", "4"),
        ("demo", "--timesteps", "100k"),
    ],
)
def test_each_subcommand_lists_its_options_with_defaults(name, option, default):
    launchers = [[rl_coordconv_command(), name]]
    if name == "train":  # the same command three ways: python -m, and the script wrappers of the checkout
        launchers += [[sys.executable, "-m", "rl_coordconv", name], [sys.executable, str(ROOT / "scripts" / "train.py")]]
    for command in launchers:
        shown = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd="/")
        assert shown.returncode == 0, shown.stderr
        assert f"usage: rl-coordconv {name}" in shown.stdout
        options = shown.stdout.split("\noptions:\n")[1]
        help_of_option = options.split(f"\n  {option}", 1)[1].split("\n  -")[0]
        assert f"(default: {default})" in " ".join(help_of_option.split()), help_of_option
        helps = [" ".join(text.split()) for text in options.split("\n  -")]
        assert [text for text in helps if text.count("default") > 1] == []  # each default stated once
