"""What Typer loads that this CLI never uses, kept from its start; ``install`` applies both.

Coercion: Typer (since 0.29) coerces every value through a pydantic TypeAdapter, and importing
pydantic and building an adapter per parameter cost each command about 0.1 s before it did
anything. The CLI's parameters are str, int, float, Path, enums and lists of those; a value such a
type takes as it is (a string for str, digits for int, a member's value for an enum, a default
already of the type) is coerced here, to what Typer would give. Every other value, and every value
Typer would refuse, goes to Typer's own coercion, so its checks and its error messages are unchanged.

Help: Typer's help renderer imports rich's Markdown renderer (with markdown-it) and rich's
traceback renderer, about 40 ms; the CLI's help is rich markup, never Markdown, and Typer's pretty
tracebacks are off. They load on first use instead, which is never here.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args, get_origin

if TYPE_CHECKING:
    from collections.abc import Callable
    from importlib.abc import Loader

    from typer._click import Context
    from typer._coercion import TypeDescriptor
    from typer.core import _TyperParameter
    from typer.models import ParameterInfo

UNDECIDED: Any = object()  # not a plain value of a plain type: Typer's coercion decides
# Spellings Python and pydantic read as the same number (pydantic's lax mode takes more, and decides those).
_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _number(annotation: type[Any], info: ParameterInfo, value: Any) -> Any:
    if info.clamp:
        return UNDECIDED
    is_typed = type(value) is annotation or (annotation is float and type(value) is int)
    is_spelled = isinstance(value, str) and (_INTEGER if annotation is int else _DECIMAL).fullmatch(value)
    if not (is_typed or is_spelled):
        return UNDECIDED
    number = annotation(value)
    if (info.min is not None and number < info.min) or (info.max is not None and number > info.max):
        return UNDECIDED  # out of range: Typer says so in its own words
    return number


def _choice(annotation: type[Enum], info: ParameterInfo, value: Any, ctx: Context | None) -> Any:
    from typer._param_types import coerce_cli_choice

    try:
        return coerce_cli_choice(
            value, choices=tuple(annotation), case_sensitive=info.case_sensitive, ctx=ctx
        )
    except ValueError:
        return UNDECIDED


def _path(
    annotation: type[Path], info: ParameterInfo, value: Any, param: _TyperParameter, ctx: Context | None
) -> Any:
    from typer._param_types import coerce_cli_path

    if not isinstance(value, (str, Path)) or info.path_type is not None:
        return UNDECIDED
    try:  # a path that does not exist (when it must) and the like: Typer's own check says it
        return coerce_cli_path(annotation(value), info, path_type=annotation, param=param, ctx=ctx)
    except Exception:
        return UNDECIDED


def plain_value(
    annotation: Any, info: ParameterInfo, value: Any, param: _TyperParameter, ctx: Context | None
) -> Any:
    """``value`` coerced to ``annotation`` as Typer would, or UNDECIDED when Typer must decide."""
    if info.parser is not None:
        return UNDECIDED
    if get_origin(annotation) is list:
        (item_type,) = get_args(annotation)
        if not isinstance(value, (list, tuple)):
            return UNDECIDED
        items = [plain_value(item_type, info, item, param, ctx) for item in value]
        return UNDECIDED if any(item is UNDECIDED for item in items) else items
    if annotation is str:
        return value if isinstance(value, str) else UNDECIDED
    if annotation is bool:
        return value if isinstance(value, bool) else UNDECIDED
    if annotation in (int, float):
        return _number(annotation, info, value)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _choice(annotation, info, value, ctx)
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return _path(annotation, info, value, param, ctx)
    return UNDECIDED


def install() -> None:
    """Make Typer coerce plain values here first, and load its help renderer without what it never uses."""
    install_coercion()
    if not any(isinstance(finder, _HelpRendererFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _HelpRendererFinder())


# Renderers Typer's help module imports by name and this CLI never calls: (module, name).
UNUSED_RENDERERS = (("rich.markdown", "Markdown"), ("rich.traceback", "Traceback"))


class _OnFirstUse(type):
    """A stand-in class: calling it, or reading a name of it, loads the real class and uses that."""

    _real: tuple[str, str]

    def _load(cls) -> Any:
        module, name = cls._real
        return getattr(importlib.import_module(module), name)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._load()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(cls._load(), name)


class _HelpRendererLoader:
    """Runs typer.rich_utils with stand-ins for the renderers it never uses here, then removes them."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        stand_ins: dict[str, types.ModuleType] = {}
        for module_name, name in UNUSED_RENDERERS:
            if module_name not in sys.modules:
                stand_in = types.ModuleType(module_name)
                setattr(stand_in, name, _OnFirstUse(name, (), {"_real": (module_name, name)}))
                stand_ins[module_name] = sys.modules[module_name] = stand_in
        try:
            self.loader.exec_module(module)
        finally:  # whoever imports them next gets the real modules
            for module_name, stand_in in stand_ins.items():
                if sys.modules.get(module_name) is stand_in:
                    del sys.modules[module_name]


class _HelpRendererFinder:
    """Finds typer.rich_utils as Python would, to run it with _HelpRendererLoader."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "typer.rich_utils":
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = cast("Loader", _HelpRendererLoader(spec.loader))
        return spec


def install_coercion() -> bool:
    """Make Typer coerce plain values here first (once per process); False when this Typer cannot."""
    try:
        import typer.core
        from typer._coercion import RuntimeParam
    except ImportError:  # another Typer: its own coercion, only slower to start
        return False
    typers_build: Callable[[TypeDescriptor], RuntimeParam] | None = getattr(
        typer.core, "build_runtime_param", None
    )
    if typers_build is None or getattr(typers_build, "is_plain_first", False):
        return typers_build is not None

    @dataclass(frozen=True)
    class PlainFirstParam(RuntimeParam):
        """A parameter's coercion: plain values here, the rest by Typer's (built on first need)."""

        descriptor: TypeDescriptor | None = None
        typers: list[RuntimeParam] = field(default_factory=list)

        def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Context) -> Any:
            plain = plain_value(self.annotation, self.parameter_info, value, param, ctx)
            if plain is not UNDECIDED:
                return plain
            if not self.typers:
                assert self.descriptor is not None and typers_build is not None
                self.typers.append(typers_build(self.descriptor))
            return self.typers[0]._coerce_value(value, param=param, ctx=ctx)

    def build(descriptor: TypeDescriptor) -> RuntimeParam:
        if descriptor.file_annotation is not None:  # files to open: Typer's own way
            assert typers_build is not None
            return typers_build(descriptor)
        return PlainFirstParam(
            annotation=descriptor.annotation, parameter_info=descriptor.parameter_info, descriptor=descriptor
        )

    build.is_plain_first = True  # type: ignore[attr-defined]
    typer.core.build_runtime_param = build  # type: ignore[attr-defined]  # what get_runtime_param calls
    return True
