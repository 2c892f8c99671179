"""`optsearch eval/export --subspace-rank R [--projection online|svd] ...`."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch


def import_file(path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_with_a_subspace_rank_writes_a_torch_only_subspace_optimizer(cli, tmp_path):
    out = tmp_path / "lion_low.py"
    r = cli("export", "lion", "-o", out, "--subspace-rank", 4, "--projection", "svd",
            "--subspace-update-every", 50)
    assert r.code == 0, r.err
    assert "class LionSubspace" in r.out
    module = import_file(out, "lion_low")
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(32, 12))
    b = torch.nn.Parameter(torch.randn(12))
    opt = module.LionSubspace([w, b], lr=1e-3)
    assert (opt.defaults["rank"], opt.defaults["projection"], opt.defaults["update_every"]) == (4, "svd", 50)
    w.grad, b.grad = torch.randn(32, 12), torch.randn(12)
    opt.step()
    assert opt.state[w]["m"].shape == (32, 4) and opt.state[w]["_P"].shape == (4, 12)
    assert opt.state[b]["m"].shape == (12,)
    assert opt.state_bytes() == 4 * (32 * 4 + 4 * 12 + 12) + 2 * 8


def test_export_class_name_applies_to_the_subspace_class(cli, tmp_path):
    out = tmp_path / "m.py"
    r = cli("export", "adamw", "-o", out, "--subspace-rank", 2, "--class-name", "LowRankAdamW")
    assert r.code == 0, r.err
    module = import_file(out, "m")
    assert issubclass(module.LowRankAdamW, torch.optim.Optimizer)
    assert module.LowRankAdamW.__mro__[1].__name__ == "Adamw"  # the plain program is the base class


def test_eval_with_a_subspace_rank_trains_in_the_subspace(cli):
    r = cli("eval", "adamw", "--task", "quadratic", "--lr-multipliers", "1", "--subspace-rank", 4, "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["subspace"]["rank"] == 4 and report["subspace"]["projection"] == "online"
    assert report["status"] == "ok"
    # Beside fitness: m and v over 256 + 16 x 4 numbers, and P (4 x 16) with its two Adam moments,
    # for 256 + 16 x 16 parameters (plain AdamW keeps 2 numbers per parameter).
    assert report["state_per_param"] == pytest.approx((2 * (256 + 64) + 3 * 64) / 512)
    text = cli("eval", "adamw", "--task", "quadratic", "--lr-multipliers", "1", "--subspace-rank", 4,
               "--projection", "svd", "--subspace-update-every", 20)
    assert text.code == 0, text.err
    assert "in a low-rank subspace: svd rank 4, every 20" in text.out


@pytest.mark.parametrize("command", ["eval", "export"])
@pytest.mark.parametrize("flags, words", [
    (["--subspace-rank", "0"], "--subspace-rank must be >= 1, got 0"),
    (["--subspace-rank", "four"], "--subspace-rank must be an integer, got 'four'"),
    (["--subspace-rank", "4", "--projection", "pca"], "projection must be one of online, svd, got 'pca'"),
    (["--subspace-rank", "4", "--subspace-update-every", "0"], "update_every must be an integer >= 1, got 0"),
    (["--subspace-rank", "4", "--subspace-lr", "-1"], "lr_p must be a finite number >= 0, got -1.0"),
    (["--subspace-rank", "4", "--subspace-lr", "x"], "--subspace-lr must be a number, got 'x'"),
    (["--projection", "svd"], "need --subspace-rank R"),
])
def test_bad_subspace_options_are_one_line_errors_with_exit_code_2(cli, tmp_path, command, flags, words):
    extra = ["-o", tmp_path / "x.py"] if command == "export" else ["--task", "quadratic"]
    r = cli(command, "lion", *extra, *flags)
    assert r.code == 2
    assert r.err.count("\n") == 1 and words in r.err, r.err
    assert not (tmp_path / "x.py").exists()


def test_muon_runs_and_exports_in_the_subspace_on_the_projected_matrices(cli, tmp_path):
    """Matrix ops in a subspace act on the projected matrix (big side x rank): Muon orthogonalizes
    the momentum of the low-rank gradient, a known combination (GaLore's projection with Muon's step)."""
    r = cli("eval", "muon", "--task", "quadratic", "--lr-multipliers", "1", "--subspace-rank", 4, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["status"] == "ok"
    out = tmp_path / "muon_low.py"
    r = cli("export", "muon", "-o", out, "--subspace-rank", 4)
    assert r.code == 0, r.err
    module = import_file(out, "muon_low")
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(32, 12))
    opt = module.MuonSubspace([w], lr=1e-2)
    w.grad = torch.randn(32, 12)
    before = w.detach().clone()
    opt.step()
    assert opt.state[w]["m"].shape == (32, 4) and torch.isfinite(w).all() and not torch.equal(w, before)
