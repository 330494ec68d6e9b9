"""Benchmarks report each result as a ratio against the named peer of its group, same run.

A benchmark marks itself as the peer with ``benchmark.extra_info["peer"] = "<name>"``; the
summary at the end prints, for every group, each entry's median and its speed-up over the peer.
"""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, list] = {}
    for bench in session.benchmarks:
        groups.setdefault(bench.group or bench.name, []).append(bench)
    terminalreporter.section("speed-up over the named peer (median time ratio)")
    for group, benches in sorted(groups.items()):
        peers = [b for b in benches if b.extra_info.get("peer")]
        if not peers:
            continue
        peer = peers[0]
        peer_median = peer.stats.median
        terminalreporter.write_line(f"{group}  (peer: {peer.extra_info['peer']}, {peer_median * 1e3:.2f} ms)")
        for b in benches:
            if b is peer:
                continue
            terminalreporter.write_line(
                f"    {b.name:60s} {b.stats.median * 1e3:10.2f} ms   {peer_median / b.stats.median:8.2f}x"
            )
