"""Checks a /metrics answer against the Prometheus conventions the daemons keep."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def families(text: str) -> dict[str, tuple[str, str, dict[str, float]]]:
    """Parse exposition text: family name -> (type, help, {sample line key: value}),
    asserting on the way that every family has HELP and TYPE, counters end in
    _total, and names carry the daemon's prefix."""
    out: dict[str, tuple[str, str, dict[str, float]]] = {}
    lines = text.splitlines()
    for fam in text_string_to_metric_families(text):
        assert fam.name.startswith("esvpn_"), fam.name
        assert fam.documentation, f"{fam.name}: no HELP"
        assert fam.type in ("counter", "gauge", "histogram"), f"{fam.name}: TYPE {fam.type}"
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds"), f"{fam.name}: a histogram names its unit"
        name = f"{fam.name}_total" if fam.type == "counter" else fam.name
        assert f"# HELP {name} {fam.documentation}" in lines
        assert f"# TYPE {name} {fam.type}" in lines
        samples: dict[str, float] = {}
        for s in fam.samples:
            if fam.type == "counter":
                assert s.name in (name, f"{fam.name}_created"), s.name
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[s.name + (f"{{{labels}}}" if labels else "")] = s.value
        out[name] = (fam.type, fam.documentation, samples)
    return out
