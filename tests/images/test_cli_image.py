"""``berth image …`` and docker's short forms, end to end through the console script."""

from __future__ import annotations

import json
import os

import pytest
from image_helpers import assert_one_line_error, berth

from berth.image.store import ImageStore


def test_bootstrap_then_images_table_quiet_and_json(root):
    r = berth(root, "image", "bootstrap", "busybox", check=True)
    iid = r.stdout.decode().split()[-1]
    out = berth(root, "images", check=True).stdout.decode().splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert out[1].split()[:3] == ["busybox", "latest", iid[7:19]]
    assert berth(root, "images", "-q", check=True).stdout.decode() == iid[7:19] + "\n"
    row = json.loads(berth(root, "image", "ls", "--format", "json", check=True).stdout)
    assert (row["Repository"], row["Tag"], row["ID"]) == ("busybox", "latest", iid[7:19])


def test_tag_rmi_and_inspect(bb_store):
    root = bb_store.root
    berth(root, "tag", "busybox", "me/app:v1", check=True)
    info = json.loads(berth(root, "image", "inspect", "me/app:v1", check=True).stdout)[0]
    assert sorted(info["RepoTags"]) == ["busybox:latest", "me/app:v1"]
    assert info["Config"]["Cmd"] == ["sh"]
    r = berth(root, "rmi", "me/app:v1", check=True)
    assert r.stdout.decode() == "Untagged: me/app:v1\n"
    r = berth(root, "image", "rm", "busybox", check=True)
    assert "Deleted: sha256:" in r.stdout.decode()
    assert ImageStore(root).list() == []


def test_history_lists_the_layer(bb_store):
    out = berth(bb_store.root, "image", "history", "busybox", check=True).stdout.decode()
    assert "bootstrap busybox" in out


def test_fsck_exit_status_follows_corruption(bb_store):
    root = bb_store.root
    assert berth(root, "image", "fsck", check=True).stdout.decode().strip() == "image store OK"
    blob = bb_store.blob_path(bb_store.get("busybox").layers[0]["digest"])
    data = bytearray(blob.read_bytes())
    data[-5] ^= 1
    blob.write_bytes(bytes(data))
    r = berth(root, "image", "fsck")
    assert r.returncode == 1 and b"corrupt blob" in r.stdout
    assert berth(root, "image", "fsck", "--repair").returncode == 0
    assert berth(root, "image", "fsck").returncode == 0


def test_prune_reports_reclaimed_space(bb_store):
    root = bb_store.root
    r = berth(root, "image", "prune", "-a", "-f", check=True)
    assert "deleted: sha256:" in r.stdout.decode() and "Total reclaimed space:" in r.stdout.decode()


@pytest.mark.parametrize("args,needle", [
    (["rmi", "nothere"], "not found"),
    (["image", "inspect", "Bad:Ref!"], "invalid"),
    (["tag", "nothere", "x:1"], "not found"),
    (["image", "bogus"], "not a berth image command"),
    (["pull", "--platform", "linux", "busybox"], "invalid platform"),
    (["image", "bootstrap", "alpine"], "unknown base image"),
    (["save", "nothere", "-o", "/dev/null"], "not found"),
    (["image", "import"], "required"),
])
def test_bad_input_is_one_line_and_nonzero(root, args, needle):
    r = berth(root, *args)
    assert_one_line_error(r, needle)


def test_image_help_lists_subcommands(root):
    out = berth(root, "image", "--help", check=True).stdout.decode()
    for sub in ("pull", "push", "save", "load", "import", "export", "fsck", "bootstrap"):
        assert f"  {sub}" in out


@pytest.mark.timeout(1800)
@pytest.mark.skipif(os.environ.get("BERTH_SLOW_TESTS") != "1",
                    reason="debootstrap takes minutes: set BERTH_SLOW_TESTS=1")
def test_bootstrap_debian_bookworm_with_debootstrap(tmp_path):
    root = tmp_path / "root"
    r = berth(root, "image", "bootstrap", "debian:bookworm", timeout=1800)
    assert r.returncode == 0, r.stderr.decode()
    s = ImageStore(root)
    img = s.get("debian:bookworm")
    assert img.config["config"]["Cmd"] == ["bash"]
    assert (root / "cache").is_dir() and any((root / "cache").iterdir())
    # second time comes from the cache and gives the same image
    again = berth(root, "image", "bootstrap", "debian:bookworm", check=True)
    assert img.id in again.stdout.decode()


def test_apt_mirror_reads_deb822_and_one_line_sources(tmp_path):
    from berth.image.bootstrap import apt_mirror

    (tmp_path / "a.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n")
    assert apt_mirror("bookworm", (str(tmp_path),)) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text("# c\ndeb [arch=amd64] http://old.example/debian trixie main\n")
    assert apt_mirror("trixie", (str(tmp_path / "sources.list"),)) == "http://old.example/debian"
    from berth.errors import NotFound

    with pytest.raises(NotFound):
        apt_mirror("bookworm", (str(tmp_path / "none"),))
