import re
from pathlib import Path

from setuptools import find_packages, setup

# The version is written once, in the package: rl_coordconv.__version__.
INIT = (Path(__file__).parent / "rl_coordconv" / "__init__.py").read_text()
VERSION = re.search(r'^__version__ = "(.+)"$', INIT, re.MULTILINE)[1]

# One installed name: the folders agents/ and envs/ install as rl_coordconv.agents and
# rl_coordconv.envs, never as top-level packages (PyPI has packages called agents and envs).
SUBPACKAGES = {"rl_coordconv.agents": "agents", "rl_coordconv.envs": "envs"}
PACKAGES = ["rl_coordconv", *(f"rl_coordconv.{name}" for name in find_packages("rl_coordconv"))]
for package, folder in SUBPACKAGES.items():
    PACKAGES += [package, *(f"{package}.{name}" for name in find_packages(folder))]

setup(
    name="rl-coordconv",
    version=VERSION,
    description="CoordConv layers and Stable-Baselines3 feature extractors for deep RL on Atari",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=SUBPACKAGES,
    install_requires=[
        "torch>=2.4",  # torch.is_autocast_enabled(device_type), torch.get_autocast_dtype
        "stable-baselines3>=2.7,<3",
        "gymnasium>=1.0,<2",
        "ale-py>=0.11,<0.13",
        "opencv-python-headless>=4.8",
        "tensorboard>=2.14",
        "numpy>=1.24",
        "tqdm>=4.60",
        "rich>=13",
        "matplotlib>=3.7",
        "imageio>=2.30",
        "imageio-ffmpeg>=0.5",
        "scikit-learn>=1.3",  # its 8x8 digits, for the supervised classification control
    ],
    entry_points={"console_scripts": ["rl-coordconv = rl_coordconv.commands:main"]},
    extras_require={
        # scipy: reference statistics; setuptools: the wheel test; hypothesis: the property tests;
        # ruff: lint and format check in `make test`, pinned so that its formatting does not move
        "dev": ["pytest>=7.4", "pytest-xdist>=3.5", "scipy>=1.10", "setuptools>=70.1", "hypothesis>=6.100", "ruff==0.17.6"],
        "distributed": ["ray>=2.9"],
        # torchvision loads only beside PyPI's torch build of its own release (0.28 for torch 2.13,
        # 0.29 for 2.14), hence `make detection-venv`, which installs the pair. pycocotools: torchmetrics' mAP.
        "detection": ["torchvision>=0.28", "torchmetrics>=1.4", "pycocotools>=2.0.7"],
    },
)
