"""The README's complete two-process example runs as written (on a free port)
and prints the gradient that came back from worker1."""

import re
import subprocess
import sys

from tests.checks import free_port
from tests.conftest import ROOT


def test_the_readme_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(block for block in blocks if "mp.spawn" in block)
    script = tmp_path / "example.py"
    script.write_text(example.replace("127.0.0.1:29500", f"127.0.0.1:{free_port()}"))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "tensor([[1., 1., 1.],\n        [1., 1., 1.],\n        [1., 1., 1.]])" in done.stdout
