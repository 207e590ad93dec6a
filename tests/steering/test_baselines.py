"""interpflow.steering.baselines: RepE states and residual steering."""

import torch

from interpflow.models import decoder_layers, load_model
from interpflow.steering.baselines import ResidualSteerer, last_token_states


def test_residual_steerer_shifts_first_block_by_alpha_d(spec):
    model, tok = load_model(spec)
    _, layers = decoder_layers(model)
    d = torch.randn(len(layers), model.config.hidden_size)
    chats = [tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)]
    h0 = last_token_states(model, tok, chats)
    steer = ResidualSteerer(model, d)
    steer.alpha = 0.7
    h1 = last_token_states(model, tok, chats)
    assert torch.allclose(h1[0, 0] - h0[0, 0], 0.7 * d[0], atol=1e-5)
    assert not torch.allclose(h1[0, -1], h0[0, -1])
    steer.remove()
    assert torch.allclose(last_token_states(model, tok, chats), h0)


def test_last_token_states_match_unpadded_hidden_states(spec):
    model, tok = load_model(spec)
    chats = [
        tok.apply_chat_template([{"role": "user", "content": c}], tokenize=False)
        for c in ("hi", "a much longer question about honesty and lies")
    ]
    states = last_token_states(model, tok, chats)  # left-padded batch
    n_layers = states.shape[1]
    for b, chat in enumerate(chats):
        ids = tok(chat, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            hs = model(ids, output_hidden_states=True).hidden_states
        for layer in range(n_layers - 1):  # the last entry of hidden_states is after the norm
            assert torch.allclose(states[b, layer], hs[layer + 1][0, -1], atol=1e-5)
