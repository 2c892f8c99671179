import json

import pytest

from optsearch.discovered import load_zoo, zoo_names, zoo_path
from optsearch.dsl import structural_hash

DEAD = """\
def f(w, g, lr, m):
    m = interp(g, m, 0.9)
    unused = g * 2.0
    update = m * lr
    return update, m
"""

UNUSED_STATE = """\
def f(w, g, lr, m):
    m = interp(g, m, 0.9)
    update = g * lr
    return update, m
"""


def test_check_lion_shows_hash_and_no_dead_statements(cli):
    r = cli("check", "lion")
    assert r.code == 0 and r.err == ""
    assert f"hash: {structural_hash(load_zoo('lion'))}" in r.out
    assert "dead statements: none" in r.out
    assert "state: m\n" in r.out
    assert "canonical form:\n    def lion(w, g, lr, s1):" in r.out


@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_program_checks(cli, name):
    assert cli("check", name).code == 0


def test_check_file_and_zoo_name_agree(cli):
    by_name = json.loads(cli("check", "adamw", "--json").out)
    by_path = json.loads(cli("check", zoo_path("adamw"), "--json").out)
    assert by_name == by_path


def test_dead_statement_is_listed_with_its_line(cli, tmp_path):
    path = tmp_path / "dead.py"
    path.write_text(DEAD)
    r = cli("check", path)
    assert r.code == 0
    assert "dead statements: 1\n    line 3: unused = g * 2.0" in r.out
    assert json.loads(cli("check", path, "--json").out)["dead"] == [{"line": 3, "statement": "unused = g * 2.0"}]


def test_state_that_never_reaches_the_update_is_marked(cli, tmp_path):
    path = tmp_path / "unused_state.py"
    path.write_text(UNUSED_STATE)
    r = cli("check", path)
    assert "state: m (never reaches the update)" in r.out
    assert "dead statements: 1\n    line 2: m = interp(g, m, 0.9)" in r.out


def test_check_json_has_types_state_and_forms(cli):
    report = json.loads(cli("check", "adam", "--json").out)
    assert report["types"]["w"] == "tensor" and report["types"]["lr"] == "scalar"
    assert report["types"]["step"] == "scalar"
    assert report["state"] == ["m", "v"] and report["live_state"] == ["m", "v"]
    assert report["program"].startswith("def adam(w, g, lr, step, m, v):")
    assert report["canonical"].startswith("def adam(w, g, lr, step, s1, s2):")
    assert report["hash"] == structural_hash(load_zoo("adam"))
    assert report["dead"] == []
    assert report["source"] == str(zoo_path("adam"))


def test_nested_expressions_show_their_temporaries(cli, tmp_path):
    path = tmp_path / "nested.py"
    path.write_text("def f(w, g, lr):\n    return sign(g) * lr\n")
    r = cli("check", path)
    assert r.code == 0
    assert "    t1 = sign(g)\n" in r.out


def test_a_file_shadows_a_zoo_name_but_a_directory_does_not(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adam").mkdir()
    assert json.loads(cli("check", "adam", "--json").out)["name"] == "adam"
    (tmp_path / "lion").write_text("def mine(w, g, lr):\n    u = g * lr\n    return u\n")
    assert json.loads(cli("check", "lion", "--json").out)["name"] == "mine"
