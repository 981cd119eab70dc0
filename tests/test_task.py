"""Declaring tasks: the decorator, options, validation, edges and data edges."""

from __future__ import annotations

import copy
import functools

import pytest

from dremioframe_async import Task, TaskDefinitionError, TriggerRule, task
from dremioframe_async.orchestration import MappedTask, TaskFunction


@task
async def extract(table: str) -> str:
    return table


@task(name="transform_step", retries=2, retry_delay=0.5, trigger_rule="all_done", pool="p")
def transform(rows: str, context=None) -> str:
    return rows


def test_bare_decorator_returns_task_function_and_calls_build_tasks() -> None:
    assert isinstance(extract, TaskFunction)
    t = extract("users")
    assert isinstance(t, Task)
    assert t.name == "extract"
    assert t.args == ("users",)
    assert t.is_async


def test_decorator_options_and_fn() -> None:
    t = transform("x")
    assert t.name == "transform_step"
    assert t.retries == 2
    assert t.options.retry_delay == 0.5
    assert t.trigger_rule is TriggerRule.ALL_DONE
    assert t.options.pool == "p"
    assert not t.is_async
    assert t.wants_context
    assert transform.fn("rows") == "rows"  # the undecorated function, for unit tests


def test_context_decided_from_signature_not_call() -> None:
    def no_ctx(a):
        return a

    def kw_ctx(a, *, context):
        return a

    assert not Task("a", no_ctx).wants_context
    assert Task("b", kw_ctx).wants_context
    assert not Task("c", kw_ctx, kwargs={"context": 1}).wants_context


def test_set_downstream_returns_downstream_and_set_upstream_returns_self() -> None:
    a, b, c = extract("a"), extract("b"), extract("c")
    assert a.set_downstream(b).set_downstream(c) is c
    assert c.set_upstream(a) is c
    assert b.upstream == (a,)
    assert a.downstream == (b, c)
    assert (a >> b) is b
    assert (c << b) is c
    assert b.downstream == (c,)  # the same edge twice is one edge


def test_data_edges_from_arguments() -> None:
    a, b = extract("a"), extract("b")
    t = transform([a, {"k": b}])
    assert t.upstream == (a, b)
    assert t.data_dependencies() == (a, b)
    assert a.downstream == (t,)


def test_a_copied_task_has_its_own_edges_and_keeps_its_data_edges() -> None:
    a, b = extract("a"), extract("b")
    a >> b  # ``a`` now has a single-edge tuple naming it, shared by tasks linked to it alone
    t = transform(a)
    twin = copy.copy(a)
    assert twin is not a
    assert twin.name == a.name
    assert twin.args == a.args
    assert twin.upstream == ()
    assert twin.downstream == ()
    c = extract("c")
    twin >> c
    assert c.upstream[0] is twin
    assert a.downstream == (b, t)
    assert twin.downstream == (c,)
    # A copy of a task with data edges is fed by the same tasks, both ways.
    t2 = copy.copy(t)
    assert t2.upstream == (a,)
    assert t2.data_dependencies() == (a,)
    assert a.downstream == (b, t, t2)
    mapped = extract.expand(table=a)
    m2 = copy.copy(mapped)
    assert isinstance(m2, MappedTask)
    assert m2.mapped == mapped.mapped
    assert m2.upstream == (a,)
    assert m2.order > mapped.order


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        pytest.param({"retries": -1}, "retries must be a whole number", id="negative-retries"),
        pytest.param({"retries": 1.5}, "retries must be a whole number", id="float-retries"),
        pytest.param({"retries": True}, "retries must be a whole number", id="bool-retries"),
        pytest.param({"timeout": 0}, "timeout must be a positive", id="zero-timeout"),
        pytest.param({"timeout": "1"}, "timeout must be a number", id="str-timeout"),
        pytest.param({"retry_delay": -1}, "retry_delay must be a non-negative", id="neg-delay"),
        pytest.param({"retry_delay": float("inf")}, "finite", id="inf-delay"),
        pytest.param({"trigger_rule": "all_sucess"}, "valid rules: all_success", id="bad-rule"),
        pytest.param({"retry_on": 3}, "retry_on must be an Exception subclass", id="retry-on"),
        pytest.param({"retry_on": KeyboardInterrupt}, "retry_on must be", id="retry-on-base"),
        pytest.param({"pool": ""}, "pool must be a non-empty string", id="empty-pool"),
    ],
)
def test_bad_options_are_rejected_at_decoration_naming_the_task(
    options: dict[str, object], fragment: str
) -> None:
    with pytest.raises(TaskDefinitionError, match="'named'") as info:
        task(name="named", **options)(lambda: None)  # type: ignore[call-overload]
    assert fragment in str(info.value)
    assert isinstance(info.value, TypeError)


def test_unknown_trigger_rule_lists_every_valid_rule() -> None:
    with pytest.raises(TaskDefinitionError) as info:
        Task("t", lambda: None, trigger_rule="sometimes")
    for rule in TriggerRule:
        assert rule.value in str(info.value)


def test_unknown_option_and_non_callables() -> None:
    with pytest.raises(TaskDefinitionError, match="unknown option"):
        task(name="x", retrys=3)  # type: ignore[call-overload]
    with pytest.raises(TaskDefinitionError, match="action must be callable"):
        Task("x", 42)  # type: ignore[arg-type]
    with pytest.raises(TaskDefinitionError, match="needs a function"):
        task(name="x")(42)  # type: ignore[arg-type]
    with pytest.raises(TaskDefinitionError, match="name must be a non-empty"):
        Task("", lambda: None)


def test_bad_edges() -> None:
    a = extract("a")
    with pytest.raises(TaskDefinitionError, match="cannot depend on itself"):
        a.set_downstream(a)
    with pytest.raises(TaskDefinitionError, match="can only depend on a Task"):
        a.set_downstream("b")  # type: ignore[arg-type]


def test_call_arguments_checked_against_signature() -> None:
    with pytest.raises(TaskDefinitionError, match="bad arguments"):
        extract("a", "b")  # type: ignore[call-arg]
    with pytest.raises(TaskDefinitionError, match="bad arguments"):
        extract(tabel="a")  # type: ignore[call-arg]


def test_expand_builds_a_mapped_task() -> None:
    source = extract("list")
    m = extract.expand(table=source)
    assert isinstance(m, MappedTask)
    assert m.name == "extract"
    assert m.parameter == "table"
    assert m.upstream == (source,)
    assert isinstance(extract.expand(table=["a", "b"]), MappedTask)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        pytest.param({}, "at least one keyword", id="none"),
        pytest.param({"table": [1], "x": [2]}, "'x' is not a parameter", id="unknown-second"),
        pytest.param({"nope": [1]}, "not a parameter", id="unknown-param"),
        pytest.param({"table": 5}, "needs a Task or an iterable", id="int"),
        pytest.param({"table": "abc"}, "needs a Task or an iterable", id="str"),
    ],
)
def test_expand_rejects_bad_input(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(TaskDefinitionError, match=fragment):
        extract.expand(**kwargs)


def test_sync_and_async_detection() -> None:
    async def coro(x):
        return x

    class Callable:
        async def __call__(self):
            return 1

    assert Task("p", functools.partial(coro, 1)).is_async
    assert Task("c", Callable()).is_async
    assert not Task("s", print).is_async


def _sig_a(a, b=1, *, c, context=None): ...  # type: ignore[no-untyped-def]
def _sig_b(a, /, b, *rest, d=2): ...  # type: ignore[no-untyped-def]
def _sig_c(*args, **kwargs): ...  # type: ignore[no-untyped-def]
def _sig_d(): ...  # type: ignore[no-untyped-def]


@pytest.mark.parametrize(
    "fn", [_sig_a, _sig_b, _sig_c, _sig_d], ids=["kwonly", "posonly", "var", "none"]
)
@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        ((1,), {}),
        ((1,), {"c": 3}),
        ((1, 2), {"c": 3}),
        ((1, 2, 3), {"c": 3}),
        ((), {"a": 1, "c": 3}),
        ((1,), {"a": 1, "c": 3}),
        ((1,), {"b": 2, "c": 3, "zz": 4}),
        ((1, 2, 3, 4), {"d": 5}),
        ((), {"a": 1, "b": 2}),
    ],
)
def test_fast_argument_check_agrees_with_signature_bind(fn, args, kwargs) -> None:  # type: ignore[no-untyped-def]
    """The precomputed call shape may defer to bind, but never accepts what bind rejects."""
    import inspect

    from dremioframe_async.orchestration._decorator import _CallShape

    signature = inspect.signature(fn)
    supplied = (
        {"context": None} if "context" in signature.parameters and "context" not in kwargs else {}
    )
    try:
        signature.bind(*args, **kwargs, **supplied)
        binds = True
    except TypeError:
        binds = False
    if _CallShape(signature).surely_binds(args, kwargs):
        assert binds
    wrapped = task(fn)
    if binds:
        assert isinstance(wrapped(*args, **kwargs), Task)
    else:
        with pytest.raises(TaskDefinitionError, match="bad arguments"):
            wrapped(*args, **kwargs)


def test_option_keywords_are_exactly_the_task_options_fields() -> None:
    """TaskOptionValues types the keywords of @task/Task: it must list every field, no more."""
    import dataclasses
    import typing

    from dremioframe_async.orchestration import TaskOptions, TaskOptionValues

    fields = {f.name for f in dataclasses.fields(TaskOptions)}
    assert set(typing.get_type_hints(TaskOptionValues)) == fields
    for name in fields:  # and each is accepted by name
        default = getattr(TaskOptions(), name)
        assert getattr(Task("t", print, **{name: default}).options, name) == default


def test_options_object_or_keywords_not_both() -> None:
    from dremioframe_async.orchestration import ArgumentError, TaskOptions

    shared = TaskOptions(retries=2, trigger_rule="all_done", retry_on=ValueError)  # type: ignore[arg-type]
    assert shared.trigger_rule is TriggerRule.ALL_DONE
    assert shared.retry_on == (ValueError,)
    t = Task("t", print, options=shared)
    assert t.options is shared  # passed around, not copied into keywords and back
    with pytest.raises(TaskDefinitionError, match="or option keywords"):
        Task("t", print, options=shared, retries=1)
    with pytest.raises(ArgumentError, match="retries must be a whole number"):
        TaskOptions(retries=-1)
