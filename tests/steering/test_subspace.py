"""interpflow.steering.subspace on constructed examples with known answers."""

import polars as pl
import pytest
import torch

from interpflow.models import chat_prompt, decoder_layers, load_model
from interpflow.steering.subspace import (
    activation_bases,
    mechanistic_bases,
    orthonormal,
    persona_pairs,
    projection_parts,
    ratio_table,
    top_pcs,
)


def _proj(basis):
    return basis @ basis.T


def test_orthonormal_spans_the_vectors_and_drops_dependent_ones():
    v = torch.tensor([[2.0, 0, 0, 0], [1.0, 1.0, 0, 0], [3.0, 1.0, 0, 0]])  # rank 2
    b = orthonormal(v)
    assert b.shape == (4, 2)
    assert torch.allclose(b.T @ b, torch.eye(2), atol=1e-6)
    want = torch.zeros(4, 4)
    want[0, 0] = want[1, 1] = 1.0
    assert torch.allclose(_proj(b), want, atol=1e-6)


def test_projection_parts_known_values():
    """dW = [[3, 0], [4, 0], [0, 5]] on the basis e0 (d = 3): projection keeps row 0 (norm 3),
    the complement rows 1-2; the norm-matched projection is the projection at dW's norm."""
    dw = torch.tensor([[3.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
    basis = torch.tensor([[1.0], [0.0], [0.0]])
    parts = projection_parts({"m": dw}, {"m": basis})
    assert torch.equal(parts["projection"]["m"], torch.tensor([[3.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(parts["complement"]["m"], dw - parts["projection"]["m"])
    nm = parts["projection_normmatched"]["m"]
    assert float(nm.norm()) == pytest.approx(float(dw.norm()))  # sqrt(50)
    assert float(nm[0, 0]) == pytest.approx(50**0.5)
    # a dW wholly outside the basis: zero projection, zero norm-matched (no direction to scale)
    out = projection_parts({"m": torch.tensor([[0.0], [1.0], [0.0]])}, {"m": basis})
    assert float(out["projection_normmatched"]["m"].abs().sum()) == 0.0


def test_ratio_table_divides_by_the_residual_write_delta():
    deltas = {
        "full": 0.6,
        "residual_write": 0.8,
        "projection": 0.08,
        "projection_normmatched": 0.24,
        "complement": 0.72,
    }
    rows = [
        {
            "method": "projection",
            "variant": f"lora:{p}",
            "eval_set": "dilemmas",
            "alpha": a,
            "delta": (d if a == 1.0 else -d if a == -1.0 else 0.0),
        }
        for p, d in deltas.items()
        for a in (-1.0, 0.0, 1.0)
    ]
    rows.append(
        {"method": "weight", "variant": "lora", "eval_set": "dilemmas", "alpha": 1.0, "delta": 9.0}
    )
    t = ratio_table(pl.DataFrame(rows))
    assert t.height == 2 and t["alpha"].to_list() == [-1.0, 1.0]  # alpha = 0 left out
    r = t.filter(pl.col("alpha") == 1.0).row(0, named=True)
    assert r["family"] == "lora" and r["full"] == pytest.approx(0.6)
    assert r["projection_over_residual"] == pytest.approx(0.1)
    assert r["projection_normmatched_over_residual"] == pytest.approx(0.3)
    assert r["complement_over_residual"] == pytest.approx(0.9)
    assert ratio_table(pl.DataFrame(rows[-1:])).height == 0  # no projection rows


def test_mechanistic_bases_find_the_constructed_directions():
    """d = 4, two heads of dim 2, one kv group: q/k/v/o chosen so that the summed QK form is
    5·e0 e1ᵀ and the OV write is 3·e2 e3ᵀ; W_gate reads e3 most."""
    d, hd = 4, 2
    e = torch.eye(d)
    q = torch.zeros(2 * hd, d)
    q[0] = 5 * e[0]  # head 0, dim 0 reads e0 ...
    k = torch.zeros(hd, d)
    k[0] = e[1]  # ... against keys reading e1
    v = torch.zeros(hd, d)
    v[1] = e[3]
    o = torch.zeros(d, 2 * hd)
    o[2, 3] = 3.0  # head 1, dim 1 writes e2
    gate = torch.stack([10 * e[3], e[0], e[1]])
    params = {
        "model.layers.0.self_attn.q_proj.weight": q,
        "model.layers.0.self_attn.k_proj.weight": k,
        "model.layers.0.self_attn.v_proj.weight": v,
        "model.layers.0.self_attn.o_proj.weight": o,
        "model.layers.0.mlp.gate_proj.weight": gate,
        "model.layers.1.mlp.gate_proj.weight": gate,
    }
    b = mechanistic_bases(params, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=hd, k=1)
    assert torch.allclose(_proj(b["qk"][0]), _proj(e[:, [0]]), atol=1e-6)
    assert torch.allclose(_proj(b["ov"][0]), _proj(e[:, [2]]), atol=1e-6)
    assert torch.allclose(_proj(b["mlp_gate"][1]), _proj(e[:, [3]]), atol=1e-6)
    assert 1 not in b["qk"] and set(b["mlp_gate"]) == {0, 1}


def test_persona_pairs_index_the_same_question():
    # chats: POS0 q0 q1, POS1 q0 q1, NEG0 q0 q1, NEG1 q0 q1
    assert persona_pairs(2, 2, 2) == [[(0, 4), (1, 5)], [(2, 6), (3, 7)]]


def test_block_local_pca_is_the_blocks_own_write(spec):
    """Known answer from the model's own hidden states: the block basis spans the top PCs of
    hidden_states[l + 1] - hidden_states[l] (the block's write), the residual basis those of
    hidden_states[l + 1]; the contrast of one persona pair is the unit mean difference."""
    model, tok = load_model(spec)
    chats = [chat_prompt(tok, q, p) for p in ("Be kind.", "Be rude.") for q in ("Hi?", "Why so?")]
    k = 3
    got = activation_bases(model, tok, chats, persona_pairs(1, 1, 2), k, batch_size=1)
    n_layers = len(decoder_layers(model)[1])
    hs = []
    for c in chats:
        enc = tok(c, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            hs.append(model(**enc, output_hidden_states=True).hidden_states)
    for layer in range(n_layers - 1):  # the last entry of hidden_states is after the final norm
        write = torch.cat([h[layer + 1][0] - h[layer][0] for h in hs])
        out = torch.cat([h[layer + 1][0] for h in hs])
        assert torch.allclose(_proj(got["block"][layer]), _proj(top_pcs(write, k)), atol=1e-4)
        assert torch.allclose(_proj(got["residual"][layer]), _proj(top_pcs(out, k)), atol=1e-4)
        means = [h[layer + 1][0].mean(0) for h in hs]
        diff = ((means[0] - means[2]) + (means[1] - means[3])) / 2
        c = got["contrast"][layer]
        assert c.shape[1] == 1
        assert torch.allclose(_proj(c), _proj((diff / diff.norm())[:, None]), atol=1e-4)
    assert not torch.allclose(_proj(got["block"][1]), _proj(got["residual"][1]), atol=1e-3)
