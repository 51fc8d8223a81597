"""Reading /metrics, /livez and /readyz over HTTP as Prometheus and a load balancer would.

The text is parsed with prometheus_client's own parser; `Scrape.value` reads one sample by its labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


@dataclass(frozen=True)
class Scrape:
    """One scrape's samples, by sample name (`followthrough_sends_total`, `..._bucket`, …)."""

    samples: dict[str, list[Sample]]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the sample with exactly these labels; None when there is none."""
        found = [s.value for s in self.samples.get(name, []) if s.labels == labels]
        assert len(found) <= 1, f"{name}{labels} is not one sample: {found}"
        return found[0] if found else None

    def by(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        """Every sample of `name`, by the values of the labels `keys`, 0 left out."""
        return {tuple(s.labels[k] for k in keys): s.value for s in self.samples.get(name, []) if s.value != 0}


def scrape(base_url: str, token: str | None = None) -> Scrape:
    """GET <base_url>metrics and parse it; fails unless it is 200 in the Prometheus text format."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(base_url.rstrip("/") + "/metrics", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4"), answer.headers
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return Scrape(samples)


def readyz(base_url: str, verbose: bool = True) -> tuple[int, str]:
    """/readyz's status and text (`?verbose`: a line a check)."""
    answer = httpx.get(base_url.rstrip("/") + "/readyz" + ("?verbose" if verbose else ""), timeout=30)
    return answer.status_code, answer.text


def get(base_url: str, path: str, **options: object) -> httpx.Response:
    return httpx.get(base_url.rstrip("/") + path, timeout=30, **options)  # type: ignore[arg-type]
