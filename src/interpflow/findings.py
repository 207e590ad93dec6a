"""Findings: each study instance's headline results beside their controls, as one table.

A study's findings stage (rule ``<study>_findings``) writes
``results/<study>/<instance>/findings.json``: a list of :class:`Finding` rows, each a
statistic with its 95% CI, the criterion that makes it a finding, whether it holds, and the
controls it is measured against (each with its own value and the paired margin over it). Each
row has a ``kind`` (KINDS): a ``finding``, a ``control`` (the row of a control instance,
e.g. the random-init copy's own probe) or a ``check`` (a condition of the run, e.g. the
tribunal's class balance); the headline counts findings only. Each row names its ``null`` (0
for a difference, 0.5 for an AUROC; None for a check), and the table's "n to decide" column
says, from the row's own CI and n, at what n the CI would exclude the null at the measured
effect (:mod:`interpflow.power`: n·(h/|d|)², the half-width h scaling as 1/√n), or "decided
at n" where it already does; each control's paired margin (null 0) the same.
Rule ``findings`` gathers the config's instances' rows into
``results/findings/<config-id>/findings.json`` and ``findings.md`` (the table plus the wall
time of each instance's rules, from their ``benchmark:`` files; the config id names the config
files given, :mod:`interpflow.config_id`, so no run replaces another's table); ``make run``
prints that summary. The README's "Reference run" table is written only when asked:

    python -m interpflow.findings results/findings/reference/findings.json --readme README.md
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from interpflow.cli import parser as cli_parser
from interpflow.ledger import latest_run
from interpflow.power import needed_n

#: what a row is: a finding (counted in the headline), a control instance's row, a check
KINDS = ("finding", "control", "check")
README_START = "<!-- reference-run:start -->"
README_END = "<!-- reference-run:end -->"


@dataclass
class Control:
    """A control beside a finding: its own value, and the finding's margin over it.

    ``margin`` is the finding's value minus the control's on the same items, with a paired CI
    where the two share items (the same test prompts, the same eval questions).
    """

    name: str
    value: float | None = None
    ci: tuple[float, float] | None = None
    margin: float | None = None
    margin_ci: tuple[float, float] | None = None


@dataclass
class Finding:
    """One headline statistic of a study instance.

    ``expect`` states the criterion in words (e.g. "CI above 0.5 and margin CIs above 0");
    ``holds`` says whether this run meets it; a finding that does not hold is reported, never
    dropped. ``kind`` (KINDS) says whether the row is a finding, a control instance's row or
    a check of the run: only findings count in the headline. ``null`` is the value of no
    effect the CI is judged against (0 for a difference, 0.5 for an AUROC; None: no power
    line, e.g. a check), read by :func:`power_text`.
    """

    study: str
    instance: str
    model: str
    finding: str
    metric: str
    value: float
    ci: tuple[float, float] | None
    n: int
    expect: str
    holds: bool
    controls: list[Control] = field(default_factory=list)
    kind: str = "finding"
    null: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"finding kind {self.kind!r}: not one of {', '.join(KINDS)}")

    @classmethod
    def from_dict(cls, row: dict) -> Finding:
        row = dict(row)
        row["controls"] = [Control(**c) for c in row.get("controls", [])]
        return cls(**row)


def write(path: str | Path, findings: list[Finding]) -> None:
    """Write ``findings`` as JSON (non-finite numbers as null)."""
    rows = [_finite(asdict(f)) for f in findings]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(rows, indent=2, allow_nan=False) + "\n")


def read(path: str | Path) -> list[Finding]:
    return [Finding.from_dict(row) for row in json.loads(Path(path).read_text())]


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def wall_seconds(benchmark_dir: str | Path) -> float | None:
    """Total wall seconds of the rules whose ``benchmark:`` files are under ``benchmark_dir``
    (the ``s`` column of each ``.tsv``, last row: the latest run), or None when there are none."""
    runs = [latest_run(tsv) for tsv in sorted(Path(benchmark_dir).rglob("*.tsv"))]
    seconds = [float(run["s"]) for run in runs if run is not None]
    return sum(seconds) if seconds else None


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ci(ci) -> str:
    return "" if ci is None else f" [{_num(ci[0])}, {_num(ci[1])}]"


def _signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def power_text(f: Finding) -> str:
    """The row's "n to decide": at what n its CI would exclude its null at the measured effect
    (:func:`interpflow.power.needed_n`), then, for each control margin whose CI does not
    exclude 0 yet, the n it would need ("decided at n=19; margins: form n≈143 (7.5x)");
    "-" for a row with no null (a check)."""
    if f.null is None:
        return "-"
    own = needed_n(f.value, f.ci, f.n, f.null)
    margins = []
    for c in f.controls:
        p = None if c.margin is None else needed_n(c.margin, c.margin_ci, f.n, 0.0)
        if p is not None and not p.decided:
            margins.append(f"{c.name.split(' (')[0]} {p.text()}")
    text = "n/a" if own is None else own.text()
    return text + (f"; margins: {', '.join(margins)}" if margins else "")


def table_markdown(findings: list[Finding], walls: dict[tuple[str, str], float | None]) -> str:
    """The findings table: one row per finding (its kind beside it), controls as margins with
    their CIs."""
    header = (
        "| study | instance | kind | model | metric | value [95% CI] | n "
        "| n to decide | controls: margin [95% CI] | holds | wall (2 cores) |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in findings:
        controls = "; ".join(
            f"{c.name} {_num(c.value)}: {_signed(c.margin)}{_ci(c.margin_ci)}"
            if c.margin is not None
            else f"{c.name} {_num(c.value)}{_ci(c.ci)}"
            for c in f.controls
        )
        wall = walls.get((f.study, f.instance))
        lines.append(
            f"| {f.study} | {f.instance} | {f.kind} | {f.model} | {f.metric} "
            f"| {_num(f.value)}{_ci(f.ci)} "
            f"| {f.n} | {power_text(f)} | {controls or '-'} | {'yes' if f.holds else '**no**'} "
            f"| {'n/a' if wall is None else f'{wall / 60:.1f} min'} |"
        )
    return "\n".join(lines)


def table_html(findings: list[Finding], walls: dict[tuple[str, str], float | None]) -> str:
    """The findings table as a standalone HTML page (the HTML report's "Findings" entry)."""
    import html

    md = table_markdown(findings, walls).splitlines()
    head = [c.strip() for c in md[0].strip("|").split("|")]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in md[2:]]

    def cell(tag, text):
        text = html.escape(text).replace("**", "")
        return f"<{tag}>{text}</{tag}>"

    rows = ["<tr>" + "".join(cell("th", h) for h in head) + "</tr>"]
    for f, row in zip(findings, body):  # a control row's miss is expected: greyed, not red
        style = "" if f.holds else ' style="background:#fde2e2"'
        if f.kind == "control":
            style = ' style="color:#666"'
        rows.append(f"<tr{style}>" + "".join(cell("td", c) for c in row) + "</tr>")
    criteria = "".join(
        f"<li>{html.escape(f.study)}/{html.escape(f.instance)}: {html.escape(f.finding)} "
        f"&mdash; <i>{html.escape(f.expect)}</i></li>"
        for f in findings
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>interpflow findings</title>"
        "<style>table{border-collapse:collapse;font:13px sans-serif}"
        "td,th{border:1px solid #bbb;padding:3px 6px}</style>"
        f"<p><b>{html.escape(headline(findings))}</b></p>"
        f"<table>{''.join(rows)}</table><p>Criteria:</p><ul>{criteria}</ul>\n"
    )


def headline(findings: list[Finding]) -> str:
    """How many findings hold, of the findings only; control rows and checks counted apart
    (e.g. "3 of 4 findings hold; beside them 1 control row, 1 of 1 check passes")."""

    def of(kind: str) -> list[Finding]:
        return [f for f in findings if f.kind == kind]

    found, controls, checks = of("finding"), of("control"), of("check")
    text = f"{sum(f.holds for f in found)} of {len(found)} findings hold"
    extra = []
    if controls:
        extra.append(f"{len(controls)} control row{'s' * (len(controls) != 1)}")
    if checks:
        extra.append(f"{sum(f.holds for f in checks)} of {len(checks)} checks pass")
    return text + (f"; beside them {', '.join(extra)}" if extra else "")


def summary_text(findings: list[Finding]) -> str:
    """A one-screen summary: per finding, what it says, its value and CI, and its controls."""
    out = []
    for f in findings:
        mark = "holds" if f.holds else "DOES NOT HOLD"
        if f.kind == "control":
            mark = f"control row: {'meets' if f.holds else 'misses'} the criterion"
        elif f.kind == "check":
            mark = "check passes" if f.holds else "CHECK FAILS"
        out.append(f"{f.study}/{f.instance} ({f.model}, {f.kind}): {f.finding}")
        out.append(f"    {f.metric} = {_num(f.value)}{_ci(f.ci)}, n={f.n}; {mark} ({f.expect})")
        if f.null is not None:
            out.append(f"    n to decide (CI excluding {f.null:g}): {power_text(f)}")
        for c in f.controls:
            margin = "" if c.margin is None else f", margin {_signed(c.margin)}{_ci(c.margin_ci)}"
            out.append(f"    vs {c.name}: {_num(c.value)}{_ci(c.ci)}{margin}")
    return "\n".join(out)


def gather(
    paths: list[str | Path],
    out_json: str | Path,
    out_md: str | Path,
    benchmarks: str | Path = "benchmarks/results",
    out_html: str | Path | None = None,
) -> list[Finding]:
    """Every instance's findings (rule findings): ``out_json`` holds the rows and each
    instance's rule seconds, ``out_md`` the headline and the markdown table (what
    ``--readme`` writes into the README's reference run)."""
    findings = [f for p in paths for f in read(p)]
    walls = {
        (f.study, f.instance): wall_seconds(Path(benchmarks) / f.study / f.instance)
        for f in findings
    }
    rows = {
        "findings": [_finite(asdict(f)) for f in findings],
        "rule_seconds": [{"study": s, "instance": i, "seconds": w} for (s, i), w in walls.items()],
    }
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_json).write_text(json.dumps(rows, indent=2, allow_nan=False) + "\n")
    Path(out_md).write_text(
        f"**{headline(findings)}**\n\n"
        + table_markdown(findings, walls)
        + "\n\n*kind*: a finding, a control instance's own row (e.g. the random-init copy), or "
        "a check of the run (e.g. class balance); only findings count in the headline. "
        "*n to decide*: the n at which the row's CI would exclude its null (0 for a "
        "difference, 0.5 for an AUROC) at the effect it measured, n·(h/|d|)² with h the CI's "
        "half-width on the null's side and d the effect (half-widths scale as 1/√n; same "
        "design and effect assumed), or *decided at n* where it already does; then each "
        "control margin (null 0) not yet decided. "
        "*wall (2 cores)*: the sum of the instance's jobs' wall times, from their "
        "`benchmark:` files (jobs of one run may overlap; the shared model conversion is not "
        "counted). *holds*: whether the run meets the criterion in the `findings.json` beside "
        f"this table ({Path(out_json).as_posix()}).\n"
    )
    if out_html is not None:
        Path(out_html).write_text(table_html(findings, walls))
    return findings


def update_readme(readme: str | Path, table: str) -> bool:
    """Replace the text between the reference-run markers with ``table``; False if unchanged."""
    path = Path(readme)
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{path}: no {README_START} ... {README_END} markers to write the table")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{table}\n{README_END}{tail}"
    if new == text:
        return False
    path.write_text(new)
    return True


def main(argv: list[str] | None = None) -> None:
    """Print the one-screen summary of a run's findings (rule findings' findings.json) and, with
    --readme only, write its table into the README's reference run (the only file it writes).

        python -m interpflow.findings results/findings/reference/findings.json
        python -m interpflow.findings results/findings/reference/findings.json --readme README.md
    """
    parser = cli_parser(module="interpflow.findings", doc=main.__doc__)
    parser.add_argument("findings", help="results/findings/<config-id>/findings.json")
    parser.add_argument("--readme", help="write the table between the reference-run markers")
    parser.add_argument("--report", help="the HTML report's path, to print")
    parser.add_argument("--elapsed", type=float, help="the run's wall seconds, to print")
    args = parser.parse_args(argv)
    gathered = json.loads(Path(args.findings).read_text())
    findings = [Finding.from_dict(row) for row in gathered["findings"]]
    print(f"\n=== {headline(findings)} ===")
    print(summary_text(findings))
    print(f"\ntable: {Path(args.findings).with_suffix('.md')}; rows: {args.findings}")
    if args.report:
        print(f"report: {args.report}")
    if args.elapsed is not None:
        print(f"wall time: {args.elapsed / 60:.1f} min")
    if args.readme:
        changed = update_readme(args.readme, Path(args.findings).with_suffix(".md").read_text())
        print(f"{args.readme}: reference-run table {'updated' if changed else 'unchanged'}")
    else:
        print(f"into the README: python -m interpflow.findings {args.findings} --readme README.md")


if __name__ == "__main__":
    main()
