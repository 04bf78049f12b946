from setuptools import find_packages, setup

setup(
    name="rl-coordconv",
    version="0.1.0",
    description="CoordConv layers and Stable-Baselines3 feature extractors for deep RL on Atari",
    python_requires=">=3.10",
    packages=find_packages(include=["rl_coordconv", "rl_coordconv.*", "agents", "agents.*", "envs", "envs.*"]),
    install_requires=[
        "torch>=2.1",
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
    ],
    extras_require={
        "dev": ["pytest>=7.4", "scipy>=1.10"],  # scipy: reference statistics in the report tests
        "distributed": ["ray>=2.9"],
    },
)
