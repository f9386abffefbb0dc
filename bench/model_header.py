"""The exported model header as the bench sees it: is it a potnn export, what are its sizes,
and what is its hash.

Why a hash: the firmware reports the hash it was built with (INFO), so a run can refuse a board
that still carries another model.  Definition (also in firmware/PROTOCOL.md): the first four
bytes of SHA-256 over the header file's bytes, read as a little-endian uint32.
"""

from __future__ import annotations

import ast
import hashlib
import operator
import re
from dataclasses import dataclass
from pathlib import Path

MARKER = "/* potnn export"
EXPORT_VERSION = 1
REQUIRED = ("POTNN_EXPORT_VERSION", "POTNN_INPUT_C", "POTNN_INPUT_H", "POTNN_INPUT_W",
            "POTNN_INPUT_SIZE", "POTNN_NUM_CLASSES", "POTNN_RAM_BYTES", "POTNN_WEIGHT_BYTES")

_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(POTNN_[A-Z0-9_]+)[ \t]+(.+?)[ \t]*$", re.M)
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_INT_SUFFIX = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.FloorDiv: operator.floordiv, ast.Div: operator.floordiv, ast.Mod: operator.mod,
        ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitOr: operator.or_,
        ast.BitAnd: operator.and_}


class HeaderError(Exception):
    """Not a potnn export, or one that breaks the header contract; one-line message."""


@dataclass(frozen=True)
class HeaderInfo:
    path: Path
    hash: int                 # model_hash(path)
    export_version: int
    input_c: int
    input_h: int
    input_w: int
    input_size: int
    num_classes: int
    ram_bytes: int            # the model's static buffers (POTNN_RAM_BYTES)
    weight_bytes: int         # POTNN_WEIGHT_BYTES

    @property
    def hash_hex(self) -> str:
        return f"{self.hash:08x}"


def model_hash(path: str | Path) -> int:
    """First 4 bytes of SHA-256 of the header file, as a little-endian uint32."""
    digest = hashlib.sha256(Path(path).read_bytes()).digest()
    return int.from_bytes(digest[:4], "little")


def _evaluate(expr: str, macros: dict[str, str], name: str, depth: int = 0) -> int:
    """Integer value of a macro body: literals, + - * / % << >> | &, parentheses, POTNN_ names."""
    if depth > 16:
        raise HeaderError(f"{name}: macro expansion too deep")
    text = _INT_SUFFIX.sub(r"\1", _COMMENT.sub(" ", expr)).replace("/", "//")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise HeaderError(f"{name}: cannot read its value {expr.strip()!r}") from None

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in macros:
            return _evaluate(macros[node.id], macros, node.id, depth + 1)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        raise HeaderError(f"{name}: cannot read its value {expr.strip()!r}")

    return ev(tree)


def read_header(path: str | Path) -> HeaderInfo:
    """Check the header contract (marker, version, size macros) and return its numbers."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise HeaderError(f"cannot read model header {path}: {e.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    if not text.lstrip("\ufeff").startswith(MARKER):
        raise HeaderError(f"{path.name} is not a potnn export (its first line must start with '{MARKER}')")
    macros = dict(_DEFINE.findall(text))
    missing = [m for m in REQUIRED if m not in macros]
    if missing:
        raise HeaderError(f"{path.name}: potnn export without {', '.join(missing)}")
    values = {m: _evaluate(macros[m], macros, m) for m in REQUIRED}
    if values["POTNN_EXPORT_VERSION"] != EXPORT_VERSION:
        raise HeaderError(f"{path.name}: export version {values['POTNN_EXPORT_VERSION']}, "
                          f"this bench reads version {EXPORT_VERSION}")
    c, h, w = values["POTNN_INPUT_C"], values["POTNN_INPUT_H"], values["POTNN_INPUT_W"]
    if values["POTNN_INPUT_SIZE"] != c * h * w:
        raise HeaderError(f"{path.name}: POTNN_INPUT_SIZE {values['POTNN_INPUT_SIZE']} != C*H*W = {c * h * w}")
    if values["POTNN_INPUT_SIZE"] <= 0 or values["POTNN_NUM_CLASSES"] <= 0:
        raise HeaderError(f"{path.name}: input size and number of classes must be positive")
    if "potnn_predict" not in text:
        raise HeaderError(f"{path.name}: potnn export without potnn_predict")
    return HeaderInfo(path=path, hash=int.from_bytes(hashlib.sha256(raw).digest()[:4], "little"),
                      export_version=values["POTNN_EXPORT_VERSION"], input_c=c, input_h=h, input_w=w,
                      input_size=values["POTNN_INPUT_SIZE"], num_classes=values["POTNN_NUM_CLASSES"],
                      ram_bytes=values["POTNN_RAM_BYTES"], weight_bytes=values["POTNN_WEIGHT_BYTES"])
