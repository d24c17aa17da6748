"""A SOQL subset: enough of the language for a sync connector, with Salesforce's semantics.

    SELECT f1, f2 FROM Account|Contact
    [WHERE cond]  -- AND / OR / NOT / ( ), = != <> < <= > >= IN NOT IN LIKE, null,
                  -- 'strings', numbers, true/false, date-times (2024-01-01T00:00:00.000Z,
                  -- +0000, +00:00) and dates
    [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]

Text comparisons and LIKE are case-insensitive, as in Salesforce; ids compare exactly (a
15-character id literal is widened to 18). A date-time field compared with a quoted string is
refused, as Salesforce does. Errors raise :class:`SoqlError` with the API's error code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.salesforce.ids import to18
from sandbox.salesforce.schema import ID_TYPES, FieldDef, ObjectDef, canonical_datetime

Record = dict[str, Any]
Predicate = Callable[[Record], bool]


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<dt>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?)
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<str>'(?:[^'\\]|\\.)*')
      | (?P<op>!=|<>|<=|>=|=|<|>|\(|\)|,)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)

_ESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
    "_": "\\_",
    "%": "\\%",
}


@dataclass(frozen=True)
class Token:
    kind: str  # dt num str op ident end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SoqlError(
                "MALFORMED_QUERY", f"unexpected token at column {pos + 1}: {text[pos : pos + 20]!r}"
            )
        kind = m.lastgroup or "op"
        tokens.append(Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise SoqlError("MALFORMED_QUERY", f"invalid escape sequence \\{nxt}")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Literal:
    kind: str  # str num bool null dt
    value: Any


@dataclass(frozen=True)
class Compare:
    field: FieldDef
    op: str
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND OR NOT
    items: tuple[Cond, ...]


Cond = Compare | BoolOp


@dataclass(frozen=True)
class OrderItem:
    field: FieldDef
    descending: bool
    nulls_last: bool


@dataclass
class Query:
    obj: ObjectDef
    fields: list[str]
    where: Cond | None
    order: list[OrderItem]
    limit: int | None
    offset: int

    def predicate(self) -> Predicate | None:
        return None if self.where is None else _compile(self.where)

    def lower_bound(self, field: str) -> str | None:
        """The least value of ``field`` any matching record can have, when the WHERE clause
        implies one (lets the store start from a sorted index instead of scanning)."""
        return None if self.where is None else _lower_bound(self.where, field)


class _Parser:
    def __init__(
        self, text: str, objects: dict[str, ObjectDef], whole_seconds: bool = False
    ) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.objects = objects
        self.obj: ObjectDef | None = None
        self.whole_seconds = whole_seconds

    # -- token helpers
    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def keyword(self, *words: str) -> bool:
        tok = self.peek()
        return bool(tok.kind == "ident" and tok.text.upper() in words)

    def expect_keyword(self, word: str) -> None:
        tok = self.next()
        if tok.kind != "ident" or tok.text.upper() != word:
            raise SoqlError(
                "MALFORMED_QUERY",
                f"unexpected token: '{tok.text or 'end of query'}', expected {word}",
            )

    def expect_op(self, op: str) -> None:
        tok = self.next()
        if tok.kind != "op" or tok.text != op:
            raise SoqlError(
                "MALFORMED_QUERY",
                f"unexpected token: '{tok.text or 'end of query'}', expected '{op}'",
            )

    # -- grammar
    def parse(self) -> Query:
        self.expect_keyword("SELECT")
        names: list[str] = []
        while True:
            tok = self.next()
            if tok.kind != "ident":
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}'")
            names.append(tok.text)
            if self.peek().kind == "op" and self.peek().text == ",":
                self.next()
                continue
            break
        self.expect_keyword("FROM")
        tok = self.next()
        obj = next((o for o in self.objects.values() if o.name.lower() == tok.text.lower()), None)
        if obj is None:
            raise SoqlError("INVALID_TYPE", f"sObject type '{tok.text}' is not supported.")
        self.obj = obj
        fields = [self.field(n).name for n in names]
        where = None
        if self.keyword("WHERE"):
            self.next()
            where = self.disjunction()
        order: list[OrderItem] = []
        if self.keyword("ORDER"):
            self.next()
            self.expect_keyword("BY")
            while True:
                f = self.field(self.next().text)
                desc = False
                if self.keyword("ASC", "DESC"):
                    desc = self.next().text.upper() == "DESC"
                nulls_last = desc
                if self.keyword("NULLS"):
                    self.next()
                    nulls_last = self.next().text.upper() == "LAST"
                order.append(OrderItem(f, desc, nulls_last))
                if self.peek().kind == "op" and self.peek().text == ",":
                    self.next()
                    continue
                break
        limit = None
        offset = 0
        if self.keyword("LIMIT"):
            self.next()
            limit = self.integer()
        if self.keyword("OFFSET"):
            self.next()
            offset = self.integer()
            if offset > 2000:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
        tok = self.peek()
        if tok.kind != "end":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}'")
        return Query(obj, fields, where, order, limit, offset)

    def integer(self) -> int:
        tok = self.next()
        if tok.kind != "num" or not tok.text.isdigit():
            raise SoqlError("MALFORMED_QUERY", f"expected a number, got '{tok.text}'")
        return int(tok.text)

    def field(self, name: str) -> FieldDef:
        assert self.obj is not None
        f = self.obj.lookup(name)
        if f is None:
            raise SoqlError(
                "INVALID_FIELD",
                f"No such column '{name}' on entity '{self.obj.name}'. If you are attempting to "
                "use a custom field, be sure to append the '__c' after the custom field name.",
            )
        return f

    def disjunction(self) -> Cond:
        items = [self.conjunction()]
        while self.keyword("OR"):
            self.next()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else BoolOp("OR", tuple(items))

    def conjunction(self) -> Cond:
        items = [self.unary()]
        while self.keyword("AND"):
            self.next()
            items.append(self.unary())
        return items[0] if len(items) == 1 else BoolOp("AND", tuple(items))

    def unary(self) -> Cond:
        if self.keyword("NOT"):
            self.next()
            return BoolOp("NOT", (self.unary(),))
        tok = self.peek()
        if tok.kind == "op" and tok.text == "(":
            self.next()
            cond = self.disjunction()
            self.expect_op(")")
            return cond
        return self.comparison()

    def comparison(self) -> Cond:
        tok = self.next()
        if tok.kind != "ident":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}'")
        f = self.field(tok.text)
        op_tok = self.next()
        if op_tok.kind == "op" and op_tok.text in ("=", "!=", "<>", "<", "<=", ">", ">="):
            op = "!=" if op_tok.text == "<>" else op_tok.text
            return Compare(f, op, self.literal(f))
        if op_tok.kind == "ident" and op_tok.text.upper() == "LIKE":
            lit = self.literal(f)
            if lit.kind != "str":
                raise SoqlError("INVALID_FIELD", "LIKE needs a string")
            return Compare(f, "LIKE", lit)
        negate = False
        if op_tok.kind == "ident" and op_tok.text.upper() == "NOT":
            negate = True
            op_tok = self.next()
        if op_tok.kind == "ident" and op_tok.text.upper() == "IN":
            self.expect_op("(")
            values = [self.literal(f)]
            while self.peek().kind == "op" and self.peek().text == ",":
                self.next()
                values.append(self.literal(f))
            self.expect_op(")")
            return Compare(f, "NOT IN" if negate else "IN", tuple(values))
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{op_tok.text}'")

    def literal(self, f: FieldDef) -> Literal:
        if f.type == "address":
            # a compound field filters only through DISTANCE(), which the sandbox lacks
            raise SoqlError(
                "INVALID_FIELD", f"field '{f.name}' can not be filtered in a query call"
            )
        tok = self.next()
        if tok.kind == "ident" and tok.text.lower() == "null":
            return Literal("null", None)
        if f.type == "datetime":
            if tok.kind == "str":
                raise SoqlError(
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{f.name}' must be of type dateTime "
                    "and should not be enclosed in quotes",
                )
            if tok.kind != "dt":
                raise SoqlError("MALFORMED_QUERY", f"invalid date-time literal '{tok.text}'")
            if self.whole_seconds and "." in tok.text:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"invalid date-time literal '{tok.text}': use YYYY-MM-DDThh:mm:ssZ or "
                    "YYYY-MM-DDThh:mm:ss+hh:mm",
                )
            value = canonical_datetime(tok.text)
            if value is None:
                raise SoqlError("MALFORMED_QUERY", f"invalid date-time literal '{tok.text}'")
            return Literal("dt", value)
        if f.type == "boolean":
            if tok.kind == "ident" and tok.text.lower() in ("true", "false"):
                return Literal("bool", tok.text.lower() == "true")
            raise SoqlError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{f.name}' must be of type boolean "
                "and should not be enclosed in quotes",
            )
        if tok.kind == "str":
            value = _unquote(tok.text)
            if f.type in ID_TYPES:
                value = to18(value)
            return Literal("str", value)
        if tok.kind == "num":
            return Literal("num", tok.text)
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}'")


def parse(text: str, objects: dict[str, ObjectDef], *, whole_seconds: bool = False) -> Query:
    """Parse ``text`` against the known objects; raise :class:`SoqlError`. ``whole_seconds``:
    refuse a date-time literal with a fraction of a second (the documented formats have
    none; Salesforce itself takes one)."""
    return _Parser(text, objects, whole_seconds).parse()


# -- evaluation ----------------------------------------------------------------------------


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _key(f: FieldDef) -> Callable[[Any], Any]:
    """How values of ``f`` compare: text case-insensitively, ids and stamps exactly."""
    if f.type in ID_TYPES or f.type in ("datetime", "boolean"):
        return lambda v: v
    if f.type == "double":
        return lambda v: float(v)
    return lambda v: v.casefold()


def _compile(cond: Cond) -> Predicate:
    if isinstance(cond, BoolOp):
        parts = [_compile(c) for c in cond.items]
        if cond.op == "AND":
            return lambda r: all(p(r) for p in parts)
        if cond.op == "OR":
            return lambda r: any(p(r) for p in parts)
        inner = parts[0]
        return lambda r: not inner(r)
    name = cond.field.name
    key = _key(cond.field)
    op = cond.op
    if op in ("IN", "NOT IN"):
        assert isinstance(cond.value, tuple)
        wanted = {key(v.value) for v in cond.value if v.value is not None}
        has_null = any(v.value is None for v in cond.value)
        if op == "IN":
            return lambda r: (
                (r.get(name) is None and has_null)
                or (r.get(name) is not None and key(r[name]) in wanted)
            )
        return lambda r: (
            not (
                (r.get(name) is None and has_null)
                or (r.get(name) is not None and key(r[name]) in wanted)
            )
        )
    assert isinstance(cond.value, Literal)
    lit = cond.value.value
    if op == "LIKE":
        rx = _like_regex(lit)
        return lambda r: r.get(name) is not None and rx.fullmatch(r[name]) is not None
    if lit is None:
        if op == "=":
            return lambda r: r.get(name) is None
        if op == "!=":
            return lambda r: r.get(name) is not None
        return lambda r: False
    k = key(lit)
    if op == "=":
        return lambda r: r.get(name) is not None and key(r[name]) == k
    if op == "!=":
        return lambda r: r.get(name) is None or key(r[name]) != k
    if op == "<":
        return lambda r: r.get(name) is not None and key(r[name]) < k
    if op == "<=":
        return lambda r: r.get(name) is not None and key(r[name]) <= k
    if op == ">":
        return lambda r: r.get(name) is not None and key(r[name]) > k
    return lambda r: r.get(name) is not None and key(r[name]) >= k


def _lower_bound(cond: Cond, field: str) -> str | None:
    if isinstance(cond, Compare):
        if (
            cond.field.name == field
            and cond.op in ("=", ">", ">=")
            and isinstance(cond.value, Literal)
            and cond.value.value is not None
        ):
            return str(cond.value.value)
        return None
    if cond.op == "AND":
        bounds = [b for b in (_lower_bound(c, field) for c in cond.items) if b is not None]
        return max(bounds) if bounds else None
    if cond.op == "OR":
        ors = [_lower_bound(c, field) for c in cond.items]
        if any(b is None for b in ors):
            return None
        return min(b for b in ors if b is not None)
    return None


def sort_records(records: list[Record], order: list[OrderItem]) -> list[Record]:
    """Sort by ``order`` (stable; nulls first for ASC, last for DESC unless told)."""
    for item in reversed(order):
        name = item.field.name
        key = _key(item.field)
        present = [r for r in records if r.get(name) is not None]
        missing = [r for r in records if r.get(name) is None]
        present.sort(key=lambda r: key(r[name]), reverse=item.descending)
        records = present + missing if item.nulls_last else missing + present
    return records
