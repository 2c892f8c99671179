import json

from optsearch.discovered import zoo_names, zoo_role_names


def test_zoo_lists_every_name_with_its_description(cli):
    r = cli("zoo")
    assert r.code == 0
    lines = r.out.splitlines()
    assert [line.split()[0] for line in lines] == zoo_names() + zoo_role_names()
    assert any(line.startswith("lion") and "Chen et al. 2023" in line for line in lines)
    assert any(line.startswith("lion_adamw") and "one program per role: Lion on the hidden" in line for line in lines)


def test_zoo_json(cli):
    rows = json.loads(cli("zoo", "--json").out)
    assert [row["name"] for row in rows] == zoo_names() + zoo_role_names()
    assert {row["kind"] for row in rows} == {"program", "roles"}
    assert all(row["description"] for row in rows)


def test_version(cli):
    import optsearch

    r = cli("--version")
    assert r.code == 0 and r.out == f"optsearch {optsearch.__version__}\n"
