"""SkillZero: skills at training, zero at inference (SKILL0 as a verl-agent style framework)."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent


def requirements(name: str) -> list[str]:
    lines = (here / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="skillzero",
    version="0.1.0",
    description="In-context agentic RL with a dynamic skill curriculum (SKILL0), verl-agent style",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["verl*", "agent_system*"]),
    package_data={"verl": ["trainer/config/*.yaml"]},
    install_requires=requirements("requirements.txt"),
    extras_require={"gpu": requirements("requirements-gpu.txt")},
)
