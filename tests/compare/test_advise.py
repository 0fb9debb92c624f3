"""isolation auto: the rules pick the mode the declared needs and the host allow, and say why."""

import pytest

from berth.engine.advise import HostCaps, choose, explain
from berth.errors import ConfigError, UsageError

TCG_HOST = HostCaps(vm=True, vm_reason="QEMU with tcg", kvm=False, kvm_reason="no vmx/svm", runsc=True)
KVM_HOST = HostCaps(vm=True, vm_reason="QEMU with kvm", kvm=True, kvm_reason="ok", runsc=True)
NO_VM = HostCaps(vm=False, vm_reason="qemu-system-x86_64 is not installed", kvm=False, kvm_reason="no /dev/kvm", runsc=False)


def test_untrusted_picks_vm_and_explains():
    mode, why = choose(set(), True, {}, TCG_HOST)
    assert mode == "vm" and "untrusted" in why and "own kernel" in why
    line = explain(mode, why)
    assert line.startswith("isolation auto: vm (") and "\n" not in line


def test_fast_start_picks_container_and_explains():
    mode, why = choose({"fast-start"}, False, {}, TCG_HOST)
    assert mode == "container" and "fast-start" in why


def test_nothing_declared_picks_container():
    assert choose(set(), False, None, KVM_HOST)[0] == "container"


def test_image_label_declares_own_kernel():
    mode, why = choose(set(), False, {"org.berth.requires": "own-kernel"}, KVM_HOST)
    assert mode == "vm" and "own-kernel" in why and "KVM" in why


def test_strong_isolation_and_fast_start_without_kvm_prefer_gvisor_when_allowed():
    assert choose({"strong-isolation", "fast-start"}, False, {}, TCG_HOST, modes=("container", "vm", "gvisor"))[0] == "gvisor"
    # Where the caller cannot run gVisor, isolation wins over speed: vm.
    assert choose({"strong-isolation", "fast-start"}, False, {}, TCG_HOST)[0] == "vm"
    # With KVM a VM starts fast enough: vm.
    assert choose({"strong-isolation", "fast-start"}, False, {}, KVM_HOST, modes=("container", "vm", "gvisor"))[0] == "vm"


def test_untrusted_is_never_downgraded_to_a_shared_kernel():
    with pytest.raises(ConfigError, match="neither runs here"):
        choose(set(), True, {}, NO_VM)
    with pytest.raises(ConfigError, match="own-kernel needs a VM"):
        choose({"own-kernel"}, False, {}, NO_VM)


def test_unknown_requirement_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown requirement gpu"):
        choose(set(), False, {"org.berth.requires": "gpu,fast-start"}, KVM_HOST)


def test_host_probe_reports_this_host():
    caps = HostCaps.probe()
    assert caps.vm_reason and caps.kvm_reason
    assert isinstance(caps.kvm, bool) and isinstance(caps.runsc, bool)


def test_modes_the_caller_cannot_run_are_not_chosen():
    assert choose(set(), True, {}, TCG_HOST, modes=("container", "gvisor"))[0] == "gvisor"
    with pytest.raises(ConfigError, match="vm is not among the modes"):
        choose(set(), True, {}, TCG_HOST, modes=("container",))
