"""The Gradio app of :mod:`interpflow.demo`: a Replay and a Live tab, token highlights and a
running class-probability chart (inline SVG: no plotting service, nothing fetched).

Every scored token is a ``<span class="tok">`` carrying ``data-position``, ``data-token-id``
and ``data-proba`` (the probe's class probabilities as JSON, full precision), coloured by the
most probable class with an opacity that grows with its probability; the token list carries
``data-done="1"`` once a generation has finished. The browser test reads these.
"""

from __future__ import annotations

import html
import json

from interpflow.demo_scores import DemoInstance, LiveScorer, Scored, replay_case, test_prompts

#: class -> colour (seed 000's three classes; others take the tab10 palette in order)
COLOURS = {"normal": "#2ca02c", "eval_aware": "#ff7f0e", "deceptive": "#d62728"}
PALETTE = ["#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

CSS = """
.tokens {font-family: ui-monospace, monospace; font-size: 15px; line-height: 2.1;}
.tok {padding: 2px 1px; border-radius: 3px; white-space: pre-wrap;}
.tok.scored {border-bottom: 2px solid #444;}
.prompt-text {color: #555; font-style: italic; margin-bottom: 6px;}
.legend span {display: inline-block; margin-right: 14px;}
table.scores {font-size: 13px; margin-top: 8px;}
table.scores td, table.scores th {padding: 1px 10px; text-align: right;}
"""


def colours(classes) -> dict[str, str]:
    rest = iter(PALETTE)
    return {str(c): COLOURS.get(str(c)) or next(rest, "#333333") for c in classes}


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha:.3f})"


def legend(classes) -> str:
    return (
        '<div class="legend">'
        + "".join(
            f'<span><b style="color:{c}">&#9632;</b> {html.escape(k)}</span>'
            for k, c in colours(classes).items()
        )
        + "</div>"
    )


def render_tokens(state: Scored, classes, element_id: str) -> str:
    """The tokens as highlighted spans (scored ones coloured, each with its probabilities)."""
    cmap, k = colours(classes), len(classes)
    parts = []
    for i, tok in enumerate(state.tokens):
        text = html.escape(tok.text.replace("\n", "\u23ce"))
        if tok.proba is None:
            parts.append(f'<span class="tok" data-i="{i}">{text}</span>')
            continue
        best = max(tok.proba, key=tok.proba.get)
        alpha = 0.15 + 0.8 * max(0.0, (tok.proba[best] - 1 / k) / (1 - 1 / k))
        tip = ", ".join(f"{c} {p:.3f}" for c, p in tok.proba.items())
        parts.append(
            f'<span class="tok scored" data-i="{i}" data-position="{html.escape(tok.position)}"'
            f' data-token-id="{tok.token_id}" data-proba="{html.escape(json.dumps(tok.proba))}"'
            f' title="{html.escape(tok.position)}: {tip}"'
            f' style="background:{_rgba(cmap[best], alpha)}">{text}</span>'
        )
    head = f'<div class="prompt-text">{html.escape(state.prompt)}</div>'
    if state.label is not None:
        head += f"<div>true class: <b>{html.escape(state.label)}</b></div>"
    return (
        f'<div id="{element_id}" class="tokens" data-done="{int(state.done)}"'
        f' data-n="{len(state.tokens)}" data-prompt-id="{html.escape(state.prompt_id or "")}">'
        f"{head}{''.join(parts)}"
        f'<div class="note">{html.escape(state.note)}</div></div>'
    )


def render_table(state: Scored, classes) -> str:
    """One row per scored token: position, token, each class's probability, the argmax."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in classes)
    rows = []
    for tok in state.tokens:
        if tok.proba is None:
            continue
        best = max(tok.proba, key=tok.proba.get)
        cells = "".join(f"<td>{tok.proba[str(c)]:.3f}</td>" for c in classes)
        text = html.escape(repr(tok.text))
        rows.append(
            f"<tr><td>{html.escape(tok.position)}</td><td><code>{text}</code></td>{cells}"
            f"<td><b>{html.escape(best)}</b></td></tr>"
        )
    return (
        f'<table class="scores"><tr><th>position</th><th>token</th>{head}<th>argmax</th></tr>'
        f"{''.join(rows)}</table>"
    )


def render_chart(state: Scored, classes, width: int = 640, height: int = 220) -> str:
    """Each class's probability over the scored tokens, as an inline SVG line chart."""
    cmap = colours(classes)
    scored = [t for t in state.tokens if t.proba is not None]
    left, right, top, bottom = 40, 110, 10, 30
    w, h = width - left - right, height - top - bottom
    n = max(len(scored) - 1, 1)

    def xy(i, p):
        return f"{left + w * i / n:.1f},{top + h * (1 - p):.1f}"

    out = [
        (
            f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}">'
        ),
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for p in (0.0, 0.5, 1.0):
        y = top + h * (1 - p)
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{p}</text>'
        )
    for j, (c, colour) in enumerate(cmap.items()):
        pts = " ".join(xy(i, t.proba[c]) for i, t in enumerate(scored))
        if len(scored) == 1:
            out.append(f'<circle cx="{left}" cy="{pts.split(",")[1]}" r="3" fill="{colour}"/>')
        elif scored:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>')
        out.append(
            f'<text x="{left + w + 10}" y="{top + 16 + 16 * j}" font-size="12" '
            f'fill="{colour}">{html.escape(c)}</text>'
        )
    out.append(
        f'<text x="{left + w / 2}" y="{height - 8}" font-size="11" text-anchor="middle">'
        "scored token (last prompt token, then the response)</text></svg>"
    )
    return "".join(out)


def build(inst: DemoInstance, scorer: LiveScorer):
    """The Gradio Blocks app of ``inst`` (``scorer`` holds its loaded model)."""
    import gradio as gr

    classes = [str(c) for c in inst.classes]
    cases = test_prompts(inst)
    rows = {r["prompt_id"]: r for r in cases.to_dicts()}
    choices = [(f"[{r['label']}] {r['prompt'][:90]}", pid) for pid, r in rows.items()]

    def replay(pid):
        if pid not in rows:
            return "", ""
        state = replay_case(inst, scorer.tokenizer, rows[pid])
        tokens = render_tokens(state, classes, "replay-tokens")
        return tokens, render_chart(state, classes) + render_table(state, classes)

    def live(prompt, max_new_tokens, seed, greedy):
        if not (prompt or "").strip():
            yield '<div id="live-tokens" data-done="1">type a prompt</div>', ""
            return
        for state in scorer.stream(
            prompt, int(max_new_tokens), int(seed), False if greedy else None
        ):
            yield render_tokens(state, classes, "live-tokens"), render_chart(state, classes)

    about = (
        f"**Deception instance `{inst.name}`** · model `{inst.model.name_or_path}` · logistic probe "
        f"at layer {inst.layer} (`results/deception/{inst.name}/probes/logreg.joblib`) · "
        f"classes {', '.join(classes)}; trained on positions "
        f"{', '.join(inst.trained_on) or '(not recorded)'}. Hover a token for its probabilities."
    )
    with gr.Blocks(title=f"interpflow demo: {inst.name}") as app:
        gr.Markdown(about)
        gr.HTML(legend(classes))
        with gr.Tab("Replay"):
            gr.Markdown(
                f"{len(rows)} held-out test prompts of the probe split: the probe's class "
                "probabilities at every captured position, from the stored activations."
            )
            pick = gr.Dropdown(
                choices, value=choices[0][1] if choices else None, label="test prompt"
            )
            r_tokens, r_chart = gr.HTML(elem_id="replay-html"), gr.HTML(elem_id="replay-chart")
            pick.change(replay, pick, [r_tokens, r_chart])
            app.load(replay, pick, [r_tokens, r_chart])
        with gr.Tab("Live", elem_id="live-tab"):
            gr.Markdown(
                "Type a prompt: the model generates with the instance's chat template and "
                "sampling, and the probe scores each new token's residual at the probe layer."
            )
            prompt = gr.Textbox(label="prompt", lines=2, elem_id="live-prompt")
            with gr.Row():
                max_new = gr.Slider(1, 128, value=32, step=1, label="max new tokens")
                seed = gr.Number(0, precision=0, label="seed")
                greedy = gr.Checkbox(False, label="greedy")
            go = gr.Button("Generate", variant="primary", elem_id="live-go")
            l_tokens, l_chart = gr.HTML(elem_id="live-html"), gr.HTML(elem_id="live-chart")
            go.click(live, [prompt, max_new, seed, greedy], [l_tokens, l_chart])
    return app


def launch(inst: DemoInstance, scorer: LiveScorer, host: str = "127.0.0.1", port: int = 7860):
    """Serve the app (blocking) on ``host:port``; nothing is fetched from the network."""
    import gradio as gr

    font = [gr.themes.Font("ui-sans-serif"), gr.themes.Font("system-ui"), "sans-serif"]
    mono = [gr.themes.Font("ui-monospace"), "monospace"]
    build(inst, scorer).queue().launch(
        server_name=host,
        server_port=port,
        share=False,
        ssr_mode=False,
        theme=gr.themes.Default(font=font, font_mono=mono),
        css=CSS,
        footer_links=[],
    )
