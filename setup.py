"""Builds distgrad: the Python package in python/distgrad and one C++ extension, distgrad._C
(`pip install .`; the build and run requirements are in pyproject.toml)."""

import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def get_extensions():
    debug = os.getenv("DEBUG", "0") == "1"
    # Every .cpp under operators/ belongs to the extension, so a new file needs no change here.
    sources = sorted(glob.glob(os.path.join("operators", "**", "*.cpp"), recursive=True))
    extra_compile_args = ["-std=c++17", "-O0", "-g"] if debug else ["-std=c++17", "-O2"]
    return [
        CppExtension(
            "distgrad._C",
            sources,
            include_dirs=[os.path.join(ROOT, "operators")],
            extra_compile_args={"cxx": extra_compile_args},
        )
    ]


# Name, version and requirements are in pyproject.toml.
setup(
    packages=find_packages("python"),
    package_dir={"": "python"},
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
