"""Plain setuptools install of the ROS-free core and the `gs4-slam` command.

ROS users build the same tree with colcon (CMakeLists.txt); `pip install .` gives
the core library without any ROS dependency.
"""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def data_files() -> list[tuple[str, list[str]]]:
    """config/ and weights/ go to <prefix>/share/gs4_slam/, where gs4_slam.resources looks."""
    out = []
    for folder in ("config", "weights"):
        for directory in sorted({p.parent for p in (ROOT / folder).rglob("*") if p.is_file()}):
            files = sorted(str(p.relative_to(ROOT)) for p in directory.iterdir() if p.is_file())
            out.append((f"share/gs4_slam/{directory.relative_to(ROOT)}", files))
    return out


def requirements(name: str) -> list[str]:
    lines = (ROOT / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="gs4_slam",
    version="0.1.0",
    description="Real-time semantic Gaussian-splatting SLAM from RGB-D (GS4 design)",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["gs4_slam", "gs4_slam.*"]),
    package_data={"gs4_slam": ["render/csrc/*.cpp", "tracking/csrc/*.cpp"]},
    data_files=data_files(),
    # torch is deliberately loose: a user's existing (CUDA) build must satisfy it.
    install_requires=["torch>=2.1"] + requirements("core.txt"),
    extras_require={"test": requirements("dev.txt")},
    entry_points={"console_scripts": ["gs4-slam=gs4_slam.cli:main"]},
)
