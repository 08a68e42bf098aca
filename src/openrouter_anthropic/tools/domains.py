"""`allowed_domains` / `blocked_domains` of the web tools: parsing and matching.

A domain matches itself and its subdomains (`example.com` matches `docs.example.com`); an
entry with a path (`example.com/blog`) also requires the URL's path to start with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yarl import URL

from ..errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class DomainRule:
    host: str
    path: str = ""

    def matches(self, host: str, path: str) -> bool:
        host_ok = host == self.host or host.endswith("." + self.host)
        return host_ok and (not self.path or path.startswith(self.path))


@dataclass(frozen=True, slots=True)
class DomainFilter:
    allowed: tuple[DomainRule, ...] = ()
    blocked: tuple[DomainRule, ...] = ()

    def permits(self, url: str) -> bool:
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            return False
        host = (parsed.host or "").rstrip(".").lower()
        path = parsed.path or "/"
        if any(rule.matches(host, path) for rule in self.blocked):
            return False
        return not self.allowed or any(rule.matches(host, path) for rule in self.allowed)

    @property
    def allowed_domains(self) -> list[str]:
        return [rule.host + rule.path for rule in self.allowed]

    @property
    def blocked_domains(self) -> list[str]:
        return [rule.host + rule.path for rule in self.blocked]


def domain_filter(tool: Mapping[str, Any], path: str) -> DomainFilter:
    allowed = _rules(tool.get("allowed_domains"), f"{path}.allowed_domains")
    blocked = _rules(tool.get("blocked_domains"), f"{path}.blocked_domains")
    if allowed and blocked:
        raise InvalidRequest(f"{path}: use either allowed_domains or blocked_domains, not both")
    return DomainFilter(allowed, blocked)


def _rules(value: Any, path: str) -> tuple[DomainRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str) or not all(
            isinstance(v, str) and v.strip() for v in value):
        raise InvalidRequest(f"{path}: Input should be a list of domain names")
    rules = []
    for entry in value:
        text = entry.strip().lower().split("://", 1)[-1]
        host, slash, rest = text.partition("/")
        rules.append(DomainRule(host.rstrip("."), slash + rest if rest else ""))
    return tuple(rules)
