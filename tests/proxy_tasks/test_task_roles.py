"""Every task says which role each of its parameters plays, so a role candidate knows what to step."""
import pytest

from optsearch.dsl import ROLES
from optsearch.proxy_tasks import TASKS, get_task


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_gives_one_known_role_per_parameter_and_vectors_below_2_dims(name):
    task = get_task(name, "small")
    roles, shapes = task.param_roles(), task.param_shapes()
    assert len(roles) == len(shapes)
    assert set(roles) <= set(ROLES)
    assert all((r == "vector") == (len(s) < 2) for r, s in zip(roles, shapes))


def named_roles(name: str) -> dict[str, str]:
    task = get_task(name, "small")
    return dict(zip(task.init(0), task.param_roles()))


@pytest.mark.parametrize("name", ["lm", "lm_smalldata", "vit", "vit_smalldata"])
def test_transformers_give_embeddings_the_head_and_the_blocks_matrices_their_roles(name):
    roles = named_roles(name)
    assert {k for k, r in roles.items() if r == "head"} == {"head.weight"}
    assert {k for k, r in roles.items() if r == "embedding"} == (
        {"embed.tokens", "embed.positions"} if name.startswith("lm") else {"embed.patches.weight", "embed.positions"})
    hidden = {k for k, r in roles.items() if r == "hidden"}
    assert hidden and all(k.startswith("blocks.") and k.endswith(".weight") for k in hidden)
    assert "blocks.0.attn.qkv.weight" in hidden and "blocks.1.mlp.proj.weight" in hidden
    assert roles["head.bias"] == roles["blocks.0.norm1.weight"] == "vector"


def test_the_mlp_has_an_input_layer_hidden_layers_and_a_head():
    assert named_roles("mlp") == {"layers.0.weight": "embedding", "layers.0.bias": "vector",
                                  "layers.1.weight": "hidden", "layers.1.bias": "vector",
                                  "layers.2.weight": "head", "layers.2.bias": "vector"}


def test_the_quadratic_falls_back_to_roles_from_the_shape():
    assert named_roles("quadratic") == {"diag": "vector", "rotated": "hidden"}


def test_imitation_tasks_have_the_roles_of_the_model_they_recorded():
    assert get_task("imitate", "small").param_roles() == get_task("mlp", "small").param_roles()
