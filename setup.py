"""Builds distgrad: the Python package in python/distgrad, its C++ extension distgrad._C, and
distgrad._unit, a test-only module the unit tests (tests/unit) drive single C++ units through
(`pip install .`; the build and run requirements are in pyproject.toml)."""

import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
# Test-only bindings: built into distgrad._unit, never into distgrad._C.
TESTING = os.path.join("operators", "testing")


def get_extensions():
    debug = os.getenv("DEBUG", "0") == "1"
    # Every .cpp under operators/ belongs to the extension, so a new file needs no change here.
    sources = sorted(
        path
        for path in glob.glob(os.path.join("operators", "**", "*.cpp"), recursive=True)
        if not path.startswith(TESTING + os.sep)
    )
    extra_compile_args = ["-std=c++17", "-O0", "-g"] if debug else ["-std=c++17", "-O2"]
    extra_link_args = []
    # DISTGRAD_SANITIZE=1 (make test-asan) builds with AddressSanitizer and UBSan.
    if os.getenv("DISTGRAD_SANITIZE", "0") == "1":
        sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        extra_compile_args = ["-std=c++17", "-O1", "-g"] + sanitize
        extra_link_args = sanitize

    def extension(name, sources):
        # Fresh lists for each: CppExtension and BuildExtension add to them.
        return CppExtension(
            name,
            sources,
            include_dirs=[os.path.join(ROOT, "operators")],
            extra_compile_args={"cxx": list(extra_compile_args)},
            extra_link_args=list(extra_link_args),
        )

    return [
        extension("distgrad._C", sources),
        # Links against distgrad._C (see BuildExt), so it compiles only its bindings.
        extension("distgrad._unit", sorted(glob.glob(os.path.join(TESTING, "*.cpp")))),
    ]


class BuildExt(BuildExtension.with_options(use_ninja=True)):
    def build_extension(self, ext):
        if ext.name == "distgrad._unit":
            # _C is built first, next to where _unit goes; _unit finds it there at run time.
            main = self.get_ext_fullpath("distgrad._C")
            ext.extra_link_args = ext.extra_link_args + [
                "-L" + os.path.dirname(os.path.abspath(main)),
                "-l:" + os.path.basename(main),
                "-Wl,-rpath,$ORIGIN",
            ]
        super().build_extension(ext)


# Name, version and requirements are in pyproject.toml.
setup(
    packages=find_packages("python"),
    package_dir={"": "python"},
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExt},
)
