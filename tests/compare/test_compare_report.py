"""berth compare on busybox, container and VM, measured for real: every row, true findings, a valid report."""

import os
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import jsonschema

ROWS = ("virtualization", "isolation", "startup", "resources", "scalability", "portability")


def test_report_validates_against_the_published_schema(report, schema):
    doc, _, _ = report
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema)


def test_every_row_is_measured_for_container_and_vm(report):
    doc, _, _ = report
    for mode in ("container", "vm"):
        col = doc["modes"][mode]
        assert col["available"], col["reason"]
        assert col["errors"] == {}, col["errors"]
        for row in ROWS:
            assert col[row] is not None, (mode, row)


def test_container_sees_the_host_kernel_and_vm_its_own(report):
    doc, _, _ = report
    host = os.uname().release
    c, v = doc["modes"]["container"], doc["modes"]["vm"]
    assert c["virtualization"]["kernel_release"] == host and c["virtualization"]["host_kernel"]
    assert v["virtualization"]["kernel_release"] != host and not v["virtualization"]["host_kernel"]
    assert v["virtualization"]["kernel_release"].startswith("6.1.0")  # Debian's cloud kernel from /boot
    # The VM's memory is its own (256 MiB guest), the container sees the host's.
    assert v["virtualization"]["memtotal_bytes"] < 512 * 2**20 < c["virtualization"]["memtotal_bytes"]


def test_host_processes_are_invisible_in_both_and_the_score_follows_the_kernel(report):
    doc, _, _ = report
    c, v = doc["modes"]["container"]["isolation"], doc["modes"]["vm"]["isolation"]
    assert not c["findings"]["host_pids_visible"] and not v["findings"]["host_pids_visible"]
    assert any(r["rule"] == "host-kernel" for r in c["rules"])
    assert not any(r["rule"] == "host-kernel" for r in v["rules"])
    assert v["score"] > c["score"]
    # Docker's defaults inside the container: 14 capabilities, a seccomp filter, mount refused.
    assert c["findings"]["capabilities"] == 14 and c["findings"]["seccomp_mode"] == 2
    assert not c["findings"]["ops"]["mount_tmpfs"] and not c["findings"]["ops"]["load_module"]
    # Root in the VM may mount: into its own kernel, which the score does not count against it.
    assert v["findings"]["ops"]["mount_tmpfs"]


def test_gvisor_column_is_measured_or_says_why(report):
    doc, _, _ = report
    col = doc["modes"]["gvisor"]
    if not shutil.which("runsc"):
        assert not col["available"] and "runsc" in col["reason"]
        return
    assert col["available"] and col["errors"] == {}, col["errors"]
    # gVisor's sentry answers uname with its own release; the host's processes stay hidden.
    assert not col["virtualization"]["host_kernel"]
    assert not col["isolation"]["findings"]["host_pids_visible"]
    comms = {p["comm"] for p in col["resources"]["idle_processes"]}
    assert "runsc" in comms and len(col["resources"]["idle_processes"]) >= 3  # runsc, gofer, sentry


def test_figures_are_positive_and_sane(report):
    doc, _, _ = report
    for mode, col in doc["modes"].items():
        if not col["available"]:
            continue
        st, res, sc = col["startup"], col["resources"], col["scalability"]
        assert 0 < st["warm"]["exit_s"]["p50"] <= st["warm"]["exit_s"]["p95"] < 60, mode
        assert 0 < st["warm"]["first_output_s"]["p50"] <= st["warm"]["exit_s"]["max"], mode
        assert len(st["warm"]["exit_s"]["samples"]) == 2 and st["exit_code"] == 0
        assert 2**20 < res["idle_memory_bytes"] < 4 * 2**30, mode
        assert 0 < res["start_cpu_seconds"] < 60, mode
        assert res["image_disk_bytes"] > 2**20  # busybox-static alone is over a MiB
        assert sc["k"] == 2 and sc["start_all_s"] > 0 and sc["fit_in_budget"]["computed"] is True
        assert sc["fit_in_budget"]["instances"] >= 1
        assert col["portability"]["fetch_bytes"] < col["portability"]["image_bytes"]  # compressed
    c, v = doc["modes"]["container"], doc["modes"]["vm"]
    # A VM carries a guest kernel and its RAM: more host memory and more host packages.
    assert v["resources"]["idle_memory_bytes"] > c["resources"]["idle_memory_bytes"]
    assert {p["name"] for p in v["portability"]["host_packages"]} >= {"qemu-system-x86"}


def test_use_cases_follow_isolation_auto(report):
    doc, _, _ = report
    uc = doc["use_cases"]
    assert "untrusted" in uc["vm"]["recommended_for"]
    assert "fast-start" in uc["container"]["recommended_for"]
    assert uc["recommendation"]["untrusted"]["mode"] == "vm"
    assert uc["vm"]["reasons"] and uc["container"]["reasons"]


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def test_html_report_is_self_contained_with_three_svg_plots(report):
    _, path, _ = report
    text = path.read_text()
    p = _Collect()
    p.feed(text)
    assert p.tags.count("svg") == 3 and "table" in p.tags
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    start = 0
    for _ in range(3):
        i = text.index("<svg", start)
        j = text.index("</svg>", i) + len("</svg>")
        ET.fromstring(text[i:j])  # well-formed XML, so any browser or rsvg renders it
        start = j


def test_nothing_is_left_running_or_mounted(report):
    _, _, root = report
    assert not [line for line in open("/proc/self/mountinfo") if str(root) in line]
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_mentions(p, str(root))]
    assert list((root / "compare").iterdir()) == [root / "compare" / "cache"]


def _cmdline_mentions(pid: str, text: str) -> bool:
    try:
        return text in open(f"/proc/{pid}/cmdline").read()
    except OSError:
        return False
