import json

from optsearch.dsl import OPS


def test_ops_lists_every_registry_op_with_signature_kind_and_summary(cli):
    r = cli("ops")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split() == ["name", "signature", "kind", "summary"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert list(rows) == list(OPS)
    for name, op in OPS.items():
        assert op.signature in rows[name] and op.kind in rows[name] and rows[name].endswith(op.summary)


def test_ops_table_columns_are_aligned(cli):
    lines = cli("ops").out.splitlines()
    column = lines[0].index("kind")
    assert all(line[column:].startswith(OPS[line.split()[0]].kind + " ") for line in lines[1:])


def test_ops_json(cli):
    r = cli("ops", "--json")
    assert r.code == 0
    rows = json.loads(r.out)
    assert [row["name"] for row in rows] == list(OPS)
    assert rows[0].keys() >= {"name", "signature", "kind", "summary"}
    assert {row["kind"] for row in rows} == {"elementwise", "reduction", "global", "factor", "matrix"}
