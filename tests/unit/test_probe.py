"""Readiness probes from the kernel's socket tables (supervise.probe), read once for all."""

from __future__ import annotations

from pathlib import Path

from mailctl.supervise import probe

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 00000000:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 0100007F:2733 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   2: 0100007F:0019 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0
"""
TCP6 = """  sl  local_address remote_address st
   0: 00000000000000000000000000000000:024B 00000000000000000000000000000000:0000 0A
"""
UNIX = """Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 12345 /run/cyrus/socket/lmtp
0000000000000000: 00000003 00000000 00000000 0001 03 12346 /run/saslauthd/mux
"""


def tables(tmp_path: Path) -> Path:
    for name, text in (("tcp", TCP), ("tcp6", TCP6), ("unix", UNIX)):
        (tmp_path / name).write_text(text)
    return tmp_path


def test_listening_ports_and_sockets_are_read_from_the_tables(tmp_path: Path) -> None:
    seen = probe.read(tables(tmp_path))
    assert seen.tcp_ports == {25, 10035, 587}  # 0x0019, 0x2733, v6 0x024B; not an open conn
    assert seen.unix_paths == {"/run/cyrus/socket/lmtp"}  # a connected socket is no listener
    assert probe.tcp_listening(587, tmp_path) and not probe.tcp_listening(465, tmp_path)
    assert not probe.unix_listening("/run/saslauthd/mux", tmp_path)


def test_missing_tables_mean_nothing_listens(tmp_path: Path) -> None:
    assert probe.read(tmp_path) == probe.Listening(frozenset(), frozenset())


def test_one_read_serves_every_probe_until_it_is_old(tmp_path: Path) -> None:
    reads = []
    real = probe.read

    def counted(proc: Path = probe.PROC_NET) -> probe.Listening:
        reads.append(proc)
        return real(proc)

    snaps = probe.Snapshots(tables(tmp_path), max_age=3600)
    probe.read = counted
    try:
        for _ in range(20):
            assert 25 in snaps.now().tcp_ports
        assert len(reads) == 1
        (tmp_path / "tcp").write_text(TCP.splitlines()[0] + "\n")  # port 25 closed
        assert 25 in snaps.now().tcp_ports  # still the snapshot
        snaps.max_age = 0
        assert 25 not in snaps.now().tcp_ports and len(reads) == 2
    finally:
        probe.read = real
