import shutil

import numpy as np
import polars as pl
import pytest
import torch

import interpflow.capture as C
import interpflow.generate as G
from interpflow.deception.prompts import build_prompt_table
from interpflow.generate import CaptureConfig, RunConfig, SamplingConfig, generate_and_capture
from interpflow.models import ModelSpec, chat_prompt, load_model
from interpflow.positions import parse_positions


def _write_prompts(d):
    bank_a = d / "alpha.txt"
    bank_b = d / "beta.txt"
    bank_a.write_text("\n".join(f"Tell me about topic {i} in detail" for i in range(11)))
    bank_b.write_text("\n".join(f"Short question {i}?" for i in range(9)))
    out = d / "prompts.parquet"
    build_prompt_table(banks=[bank_a, bank_b], table=out, summary=d / "prompts.json")
    return out


@pytest.fixture
def prompts(tmp_path):
    return _write_prompts(tmp_path)


@pytest.mark.parametrize("new_tokens", [1, 6])
def test_capture_matches_unpadded_hidden_states(stub_dir, new_tokens):
    """Both capture paths (during generation; teacher-forced) on a left-padded batch equal a
    single unpadded forward's hidden_states."""
    model, tok = load_model(ModelSpec(str(stub_dir)))
    chats = [
        chat_prompt(tok, "Hi"),
        chat_prompt(tok, "A much longer prompt about the weather today"),
    ]
    sampling = SamplingConfig(max_new_tokens=new_tokens, do_sample=True, temperature=1.5, top_p=1.0)
    positions = parse_positions(
        ["last_prompt", "response[0..1]", "response_mean", "prompt_mean", "sequence_mean"]
    )
    # Pick as EOS a token that only row 0 samples: row 0 stops early, row 1 runs to the limit
    # (its last token then needs the extra decode step).
    torch.manual_seed(1)
    seqs, _, width, *_ = G.sample_batch(model, tok, chats, sampling, [-1])
    only_row0 = [t for t in seqs[0, width:].tolist() if t not in seqs[1, width:].tolist()]
    eos = only_row0[:1] or [-1]
    torch.manual_seed(1)
    seqs, pmask, width, p_lens, r_lens, _, during, during_ix = C.sample_and_capture(
        model, tok, chats, sampling, eos, (0, 2), positions
    )
    if new_tokens > 1:
        assert int(r_lens[0]) < new_tokens and int(r_lens[1]) == new_tokens
    forced, forced_ix = C.capture_batch(
        model, seqs, pmask, width, p_lens, r_lens, (0, 2), positions
    )
    assert during_ix.keys() == forced_ix.keys()
    for b in range(2):
        p, r = int(p_lens[b]), int(r_lens[b])
        ids = seqs[b, width - p : width + r][None]
        with torch.no_grad():
            hs = model(ids, output_hidden_states=True).hidden_states
        for vectors in (during, forced):
            for layer in (0, 2):
                ref = hs[layer + 1][0]  # block `layer`'s output (not the final norm: layer < L-1)
                got = {name: vectors[(layer, name)][b] for name in during_ix}
                np.testing.assert_allclose(got["last_prompt"], ref[p - 1], atol=1e-5)
                np.testing.assert_allclose(got["prompt_mean"], ref[:p].mean(0), atol=1e-5)
                np.testing.assert_allclose(got["sequence_mean"], ref[: p + r].mean(0), atol=1e-5)
                for i in (0, 1):
                    if i < r:
                        np.testing.assert_allclose(got[f"response[{i}]"], ref[p + i], atol=1e-5)
                    else:
                        assert np.isnan(got[f"response[{i}]"]).all()
                if r:
                    np.testing.assert_allclose(
                        got["response_mean"], ref[p : p + r].mean(0), atol=1e-5
                    )
                else:
                    assert np.isnan(got["response_mean"]).all()
        assert during_ix["last_prompt"][b] == forced_ix["last_prompt"][b] == p - 1
        assert during_ix["response_mean"][b] == -1


def test_capture_texts_reads_prompt_plus_response_text_as_one_forward(stub_dir):
    """Re-reading stored chat prompts + response texts (rule deception_quant_transfer) equals
    an unpadded forward over the prompt ids and the response text's own encoding."""
    model, tok = load_model(ModelSpec(str(stub_dir)))
    chats = [chat_prompt(tok, "Hi"), chat_prompt(tok, "A much longer prompt about the weather")]
    responses = ["the sky is blue today", ""]  # an empty response has no response positions
    positions = parse_positions(["last_prompt", "response[0..1]"])
    table = C.capture_texts(model, tok, ["a", "b"], chats, responses, (1, 2), positions)
    got = pl.from_arrow(table)
    for b, pid in enumerate(["a", "b"]):
        p_ids = tok(chats[b], add_special_tokens=False)["input_ids"]
        r_ids = tok(responses[b], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            hs = model(torch.tensor([p_ids + r_ids]), output_hidden_states=True).hidden_states
        for layer in (1, 2):  # below the last block (whose hidden_states entry is after the norm)
            rows = got.filter(pl.col("prompt_id") == pid, pl.col("layer") == layer)
            by_pos = {r["position"]: r for r in rows.iter_rows(named=True)}
            expect = {"last_prompt": len(p_ids) - 1}
            expect |= {f"response[{i}]": len(p_ids) + i for i in range(min(2, len(r_ids)))}
            assert set(by_pos) == set(expect)
            for name, ix in expect.items():
                assert by_pos[name]["token_index"] == ix
                np.testing.assert_allclose(
                    by_pos[name]["activation"], hs[layer + 1][0, ix], atol=1e-5
                )


def test_layer_out_of_range(stub_dir):
    model, tok = load_model(ModelSpec(str(stub_dir)))
    seqs, pmask, width, p_lens, r_lens, _ = G.sample_batch(
        model, tok, [chat_prompt(tok, "Hi")], SamplingConfig(max_new_tokens=2), [-1]
    )
    with pytest.raises(ValueError, match="capture layer 9 out of range: the model has 4 layers"):
        C.capture_batch(
            model, seqs, pmask, width, p_lens, r_lens, (9,), parse_positions(["last_prompt"])
        )


def _run(prompts, stub_dir, out, **kw):
    return generate_and_capture(
        prompts,
        out / "gen.parquet",
        out / "act.parquet",
        out / "prov.json",
        model=ModelSpec(str(stub_dir)),
        sampling=SamplingConfig(max_new_tokens=8, seed=3),
        capture=kw.pop(
            "capture", CaptureConfig(layers=(1, 3), positions=("last_prompt", "response[0..2]"))
        ),
        run=RunConfig(batch_size=3, shard_size=5),
        log=kw.pop("log", lambda *_: None),
        **kw,
    )


def test_outputs_schema_and_provenance(prompts, stub_dir, tmp_path):
    summary = _run(prompts, stub_dir, tmp_path)
    gen = pl.read_parquet(tmp_path / "gen.parquet")
    act = pl.read_parquet(tmp_path / "act.parquet")
    assert gen.height == 20 and gen.columns == list(G.GENERATION_SCHEMA)
    assert act.schema["activation"] == pl.Array(pl.Float16, 64)
    assert set(act["layer"].unique()) == {1, 3}
    assert act.height + summary["n_missing_positions"] == 20 * 2 * 4
    assert not (tmp_path / "gen.parquet.shards").exists()  # shards removed after success
    prov = (tmp_path / "prov.json").read_text()
    assert '"torch"' in prov and '"seed": 3' in prov and '"layers"' in prov


def test_interrupted_run_resumes_to_identical_output(prompts, stub_dir, tmp_path, monkeypatch):
    full, part = tmp_path / "full", tmp_path / "part"
    _run(prompts, stub_dir, full)

    calls = {"n": 0}
    real = G.run_batch

    def dying(*a, **k):  # die in the middle of shard 3 (batches of 3, shards of 5)
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(G, "run_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        _run(prompts, stub_dir, part)
    shards = sorted((part / "gen.parquet.shards").glob("*.generations.parquet"))
    assert len(shards) == 2 and not (part / "gen.parquet").exists()

    monkeypatch.setattr(G, "run_batch", real)
    summary = _run(prompts, stub_dir, part)
    assert summary["shards_resumed"] == 2
    for name in ("gen.parquet", "act.parquet"):
        assert pl.read_parquet(full / name).equals(pl.read_parquet(part / name)), name


def test_stale_shards_are_discarded(prompts, stub_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = G.run_batch

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(G, "run_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        _run(prompts, stub_dir, tmp_path)
    monkeypatch.setattr(G, "run_batch", real)
    # A different capture config must not reuse the old shards.
    summary = _run(
        prompts, stub_dir, tmp_path, capture=CaptureConfig(layers=(0,), positions=("last_prompt",))
    )
    assert summary["shards_resumed"] == 0
    assert set(pl.read_parquet(tmp_path / "act.parquet")["layer"].unique()) == {0}


@pytest.fixture(scope="module")
def killed_after_two_shards(stub_dir, tmp_path_factory):
    """(prompts, an uninterrupted run's folder, the shard folder of a run killed in shard 3)."""
    d = tmp_path_factory.mktemp("killed")
    prompts = _write_prompts(d)
    _run(prompts, stub_dir, d / "full")
    calls = {"n": 0}
    real = G.run_batch

    def dying(*a, **k):  # batches of 3, shards of 5: batch 5 is the 2nd batch of shard 3
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    with pytest.MonkeyPatch.context() as mp, pytest.raises(KeyboardInterrupt):
        mp.setattr(G, "run_batch", dying)
        _run(prompts, stub_dir, d / "part")
    return prompts, d / "full", d / "part/gen.parquet.shards"


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path):  # same size and parquet magic, 64 bytes in the middle overwritten
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(range(64))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("00001.generations.parquet", _truncate),
        ("00000.activations.parquet", _garble),
        ("00000.sha256.json", _truncate),
    ],
)
def test_damaged_shard_is_generated_again(
    name, damage, killed_after_two_shards, stub_dir, tmp_path
):
    """A finished shard whose file is truncated or overwritten is redone (with a warning
    naming the file), never read or dropped: the outputs equal an uninterrupted run's."""
    prompts, full, shards = killed_after_two_shards
    out = tmp_path / "out"
    shutil.copytree(shards, out / "gen.parquet.shards")
    damage(out / "gen.parquet.shards" / name)
    logs: list[str] = []
    summary = _run(prompts, stub_dir, out, log=logs.append)
    warnings = [m for m in logs if m.startswith("warning:")]
    assert len(warnings) == 1 and str(out / "gen.parquet.shards" / name) in warnings[0], logs
    assert summary["shards_resumed"] == 1
    for f in ("gen.parquet", "act.parquet"):
        assert pl.read_parquet(full / f).equals(pl.read_parquet(out / f)), f


def test_unreadable_manifest_discards_shards_with_a_warning(
    killed_after_two_shards, stub_dir, tmp_path
):
    prompts, full, shards = killed_after_two_shards
    out = tmp_path / "out"
    shutil.copytree(shards, out / "gen.parquet.shards")
    _truncate(out / "gen.parquet.shards/manifest.json")
    logs: list[str] = []
    summary = _run(prompts, stub_dir, out, log=logs.append)
    assert any(
        m.startswith(f"warning: {out / 'gen.parquet.shards/manifest.json'} is unreadable")
        for m in logs
    ), logs
    assert summary["shards_resumed"] == 0
    assert pl.read_parquet(full / "gen.parquet").equals(pl.read_parquet(out / "gen.parquet"))
