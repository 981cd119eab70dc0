"""The UI's pure parts: the HTML builder, the graph and timeline drawings, masking, grouping."""

from __future__ import annotations

import pytest

import dremioframe_async.ui as ui_pkg
from dremioframe_async.orchestration import TaskState
from dremioframe_async.store import AttemptInfo, RunInfo, RunStatus, TaskInfo
from dremioframe_async.ui._actions import read_params
from dremioframe_async.ui._graph import MAX_NODES, GraphNode, graph_svg
from dremioframe_async.ui._html import Markup, el, join
from dremioframe_async.ui._model import MASK, group_tasks, mask, result_text
from dremioframe_async.ui._timeline import timeline_svg

T0 = 1_700_000_000.0


def test_public_names() -> None:
    assert sorted(ui_pkg.__all__) == [
        "ActionRefused",
        "BasicAuth",
        "BearerAuth",
        "LiveRuns",
        "PipelineEntry",
        "RunLauncher",
        "UnsafeBind",
        "auth_from_env",
        "check_bind",
        "hash_password",
        "run_launcher",
        "run_listener",
        "serve",
        "ui_app",
    ]


def test_html_builder_escapes_text_and_attributes_but_not_markup() -> None:
    built = el(
        "a",
        {"href": '"><script>', "class_": "x", "data_key": "k", "hidden": True, "title": None},
        "<b>",
        el("i", None, "&"),
        3,
        None,
        ["<", Markup("<br>")],
    )
    assert built == (
        '<a href="&quot;&gt;&lt;script&gt;" class="x" data-key="k" hidden>'
        "&lt;b&gt;<i>&amp;</i>3&lt;<br></a>"
    )
    assert join("<", Markup("<p>")) == "&lt;<p>"
    with pytest.raises(TypeError, match="cannot render"):
        el("p", None, object())


def test_graph_layers_follow_edges_and_survive_bad_data() -> None:
    nodes = [GraphNode("a", ()), GraphNode("b", ("a",)), GraphNode("c", ("a", "b", "ghost"))]
    svg = graph_svg(nodes)
    assert svg.count('<path class="edge"') == 3  # the unknown upstream is not drawn
    xs = {n: svg.split(f'data-key="{n}"')[1].split('x="')[1].split('"')[0] for n in "abc"}
    assert int(xs["a"]) < int(xs["b"]) < int(xs["c"])
    cyclic = graph_svg([GraphNode("a", ("b",)), GraphNode("b", ("a",))])
    assert cyclic.count('<g class="node s-') == 2
    big = graph_svg([GraphNode(f"t{i}", ()) for i in range(MAX_NODES + 1)])
    assert "too many to draw" in big
    assert "no tasks" in graph_svg([])


def test_long_names_are_cut_in_the_box_but_whole_in_the_tooltip() -> None:
    svg = graph_svg([GraphNode("x" * 40, (), "FAILED", "×3 (1 ok)")])
    assert "<title>" + "x" * 40 + ": FAILED (×3 (1 ok))</title>" in svg
    # the key and the note each on their own line, each cut to the box
    assert ">" + "x" * 21 + "…</text>" in svg
    assert '<text class="note" x="16" y="37">×3 (1 ok)</text>' in svg


def _task(key: str, state: TaskState, attempts: tuple[AttemptInfo, ...], **kw) -> TaskInfo:
    started = attempts[0].started if attempts else kw.pop("started", None)
    return TaskInfo("r", key, state, started, kw.pop("finished", None), attempts, **kw)


def test_timeline_draws_each_attempt_and_a_running_one_up_to_now() -> None:
    run = RunInfo("r", "p", RunStatus.RUNNING, T0, None)
    tasks = [
        _task(
            "a",
            TaskState.SUCCESS,
            (
                AttemptInfo(1, TaskState.FAILED, T0, T0 + 1, "E", "m"),
                AttemptInfo(2, TaskState.SUCCESS, T0 + 2, T0 + 3),
            ),
        ),
        _task("b", TaskState.RUNNING, (AttemptInfo(1, TaskState.RUNNING, T0 + 3, None),)),
        _task("c", TaskState.PENDING, ()),
    ]
    svg = timeline_svg(run, tasks)
    assert svg.count('class="bar s-FAILED"') == 1
    assert svg.count('class="bar s-SUCCESS"') == 1
    assert svg.count('class="bar s-RUNNING"') == 1
    assert ">c</text>" not in svg  # never started: no row
    assert "no attempt has started" in timeline_svg(run, [tasks[2]])


def test_mask_hides_secret_looking_keys_at_any_depth() -> None:
    value = {"user": "u", "Password": "p", "nested": [{"api_key": 1, "ok": {"AUTH": "x"}}]}
    assert mask(value) == {
        "user": "u",
        "Password": MASK,
        "nested": [{"api_key": MASK, "ok": {"AUTH": MASK}}],
    }
    stored = _task(
        "t", TaskState.SUCCESS, (), result={"token": "t", "z": "x" * 5000}, result_stored=True
    )
    text = result_text(stored)
    assert f'"token": "{MASK}"' in text
    assert text.endswith("characters in all)")
    assert result_text(_task("u", TaskState.SUCCESS, ())) is None


def test_mapped_instances_are_grouped_in_index_order() -> None:
    tasks = [_task(k, TaskState.SUCCESS, ()) for k in ("m", "m[10]", "m[2]", "x[0]", "n")]
    groups = group_tasks(tasks)
    assert [(g.task.key, [t.key for t in g.instances]) for g in groups] == [
        ("m", ["m[2]", "m[10]"]),
        ("x[0]", []),  # no task named x: not an instance
        ("n", []),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, {}), ("", {}), ("  ", {}), ('{"a": 1}', {"a": 1})],
    ids=["none", "empty", "blank", "object"],
)
def test_read_params_accepts_an_object_or_nothing(text, expected) -> None:
    assert read_params(text) == expected


@pytest.mark.parametrize("text", ["[1]", "{oops", '"s"'], ids=["list", "broken", "string"])
def test_read_params_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="JSON object"):
        read_params(text)


def test_an_interrupted_run_shows_its_time_as_a_lower_bound() -> None:
    from dremioframe_async.ui._pages import run_took

    gone = RunInfo("r", "p", RunStatus.INTERRUPTED, T0, T0 + 3)
    assert "≥ 3.00s" in run_took(gone)
    assert run_took(RunInfo("r", "p", RunStatus.FAILED, T0, T0 + 3)) == "3.00s"


def test_form_fields_follow_the_defaults_types_and_hide_secrets() -> None:
    from dremioframe_async.ui._params import param_fields

    fields = param_fields(
        None,
        {},
        {
            "day": "2026-12-01",
            "table": "sales",
            "n": 3,
            "ratio": 0.5,
            "full": True,
            "tables": ["a"],
            "dremio_pat": "abc",
            "dsn": "postgresql://etl:hunter2@db/x",
        },
    )
    assert [(f.name, f.kind, f.text) for f in fields] == [
        ("day", "date", "2026-12-01"),
        ("table", "text", "sales"),
        ("n", "int", "3"),
        ("ratio", "float", "0.5"),
        ("full", "bool", "true"),
        ("tables", "json", '["a"]'),
        ("dremio_pat", "secret", ""),  # never shown
        ("dsn", "secret", ""),  # a URL with a password in it
    ]
    assert param_fields({"a": 1}, {"b": 2}) == param_fields({"a": 1})  # the first source wins


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ([("p.int.n", "7"), ("p.text.t", "")], {"n": 7}),  # empty: left out
        ([("p.bool.f", "false"), ("p.bool.f", "true")], {"f": True}),
        ([("p.bool.f", "false")], {"f": False}),
        ([("p.json.j", '{"a": [1]}'), ("p.float.x", "2.5")], {"j": {"a": [1]}, "x": 2.5}),
        ([("params", "{}"), ("p.bogus.x", "1"), ("csrf_token", "t")], {}),
    ],
    ids=["int", "checked", "unchecked", "json-float", "other-names"],
)
def test_form_fields_read_back_as_typed_params(form, expected) -> None:
    from dremioframe_async.ui._params import read_fields

    assert read_fields(form) == expected


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        ([("p.int.n", "x")], "n must be a whole number"),
        ([("p.float.x", "nan")], "x must be a finite number"),
        ([("p.json.j", "NaN")], "j must be JSON"),
    ],
    ids=["int", "nan", "json-nan"],
)
def test_form_fields_refuse_what_their_kind_cannot_hold(form, problem: str) -> None:
    from dremioframe_async.ui._params import read_fields

    with pytest.raises(ValueError, match=problem):
        read_fields(form)


def test_times_read_and_said() -> None:
    from dremioframe_async.ui._times import ago, parse_time

    assert parse_time("2026-03-10") == 1_773_100_800.0
    assert parse_time("2026-03-10", end=True) == 1_773_100_800.0 + 86_400
    assert parse_time("2026-03-10T01:00:00") == 1_773_104_400.0  # UTC unless it says
    assert parse_time("2026-03-10T01:00:00+01:00") == 1_773_100_800.0
    assert parse_time("12.5") == 12.5
    for bad in ("yesterday", "nan", "-inf", "1e999"):  # nan would match all runs in PostgreSQL
        with pytest.raises(ValueError, match="not a date"):
            parse_time(bad)
    with pytest.raises(ValueError, match="2026-01-05"):
        parse_time("20260105")  # not read as epoch seconds in 1970
    assert [ago(s) for s in (5, 200, -200, -7200, 90_000 * 2)] == [
        "just now",
        "3 min ago",
        "in 3 min",
        "in 2 h",
        "2 days ago",
    ]


def test_a_task_its_runs_death_ended_shows_interrupted() -> None:
    from dremioframe_async.store._model import INTERRUPTED_REASON
    from dremioframe_async.ui._model import task_counts
    from dremioframe_async.ui._pages import task_badge

    attempt = AttemptInfo(1, TaskState.CANCELLED, T0, T0 + 3)
    died = _task("x", TaskState.CANCELLED, (attempt,), reason=INTERRUPTED_REASON, finished=T0 + 3)
    stopped = _task("y", TaskState.CANCELLED, (attempt,), reason="", finished=T0 + 3)
    assert "s-INTERRUPTED" in task_badge(died)
    assert ">INTERRUPTED<" in task_badge(died)
    assert "s-CANCELLED" in task_badge(stopped)
    assert task_counts(group_tasks([died, stopped])) == {"INTERRUPTED": 1, "CANCELLED": 1}
    run = RunInfo("r", "p", RunStatus.INTERRUPTED, T0, T0 + 3)
    svg = timeline_svg(run, [died, stopped])
    assert svg.count('class="bar s-INTERRUPTED"') == 1
    assert svg.count('class="bar s-CANCELLED"') == 1
