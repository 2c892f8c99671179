import ast
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from optsearch.discovered import zoo_names

def import_file(path: Path, name: str = "exported"):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def step_once(optimizer_class, steps: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(3, 2))
    before = p.detach().clone()
    opt = optimizer_class([p], lr=0.01)
    for _ in range(steps):
        p.grad = torch.randn(3, 2)
        opt.step()
    return before, p.detach()


def test_export_writes_a_module_that_imports_only_torch(cli, tmp_path):
    out = tmp_path / "deep" / "er" / "lion_opt.py"  # parent folders are created
    r = cli("export", "lion", "-o", out, "--class-name", "MyLion")
    assert r.code == 0, r.err
    assert out.is_file()
    assert imported_modules(out) - set(sys.stdlib_module_names) == {"torch"}
    assert f"wrote {out}" in r.out
    assert "from lion_opt import MyLion; opt = MyLion(model.parameters(), lr=" in r.out
    assert len(r.out.splitlines()) == 2


@pytest.mark.parametrize("name", zoo_names())
def test_exported_zoo_optimizer_imports_and_steps(cli, tmp_path, name):
    out = tmp_path / f"{name}_opt.py"
    assert cli("export", name, "-o", out, "--class-name", "Exported").code == 0
    # two steps: ADOPT's first step only measures the gradient's second moment
    before, after = step_once(import_file(out, f"exported_{name}").Exported, steps=2)
    assert torch.isfinite(after).all()
    assert not torch.equal(before, after)


def test_muon_under_distributed_is_refused_in_one_line_saying_why(cli, tmp_path):
    out = tmp_path / "muon_opt.py"
    r = cli("export", "muon", "-o", out, "--distributed")
    assert r.code == 2 and not out.exists()
    assert "not sign-based" in r.err and "orthogonalize" in r.err and len(r.err.splitlines()) == 1


def test_default_class_name_is_the_one_printed(cli, tmp_path):
    out = tmp_path / "opt.py"
    r = cli("export", "signum", "-o", out)
    assert r.code == 0, r.err
    class_name = r.out.split(" import ")[1].split(";")[0]
    assert issubclass(getattr(import_file(out), class_name), torch.optim.Optimizer)


def test_export_overwrites_an_existing_file(cli, tmp_path):
    out = tmp_path / "opt.py"
    out.write_text("old")
    assert cli("export", "sgd", "-o", out).code == 0
    assert out.read_text() != "old"
    assert [p.name for p in tmp_path.iterdir()] == ["opt.py"]  # no temporary left behind


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(cli, tmp_path, monkeypatch):
    out = tmp_path / "opt.py"
    out.write_text("old")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("optsearch.cli.os.replace", disk_full)
    r = cli("export", "sgd", "-o", out)
    assert r.code == 2
    assert r.err == f"optsearch: error: cannot write {out}: No space left on device\n"
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["opt.py"]


@pytest.mark.parametrize("class_name", ["1Lion", "my-lion", "class", "Optimizer"])
def test_class_name_must_be_a_usable_identifier(cli, tmp_path, class_name):
    r = cli("export", "lion", "-o", tmp_path / "opt.py", "--class-name", class_name)
    assert r.code == 2
    assert r.err.startswith("optsearch: error: ") and r.err.endswith(f"got {class_name!r}\n")
    assert "class name" in r.err and r.err.count("\n") == 1
    assert not (tmp_path / "opt.py").exists()


def test_output_that_is_a_directory_is_refused(cli, tmp_path):
    r = cli("export", "lion", "-o", tmp_path)
    assert r.code == 2
    assert r.err == f"optsearch: error: {tmp_path} is a directory; -o takes the .py file to write\n"


def test_output_under_a_file_is_refused(cli, tmp_path):
    (tmp_path / "file").write_text("")
    r = cli("export", "lion", "-o", tmp_path / "file" / "opt.py")
    assert r.code == 2
    assert r.err.startswith(f"optsearch: error: cannot write {tmp_path / 'file' / 'opt.py'}: ")
