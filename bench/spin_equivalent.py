"""../shared/bench/apic_v65.pml (the SPIN benchmark model of the v6.5 APIC-access page
reload protocol) written as a kvmsim model, guarded command for guarded command.

Each pml process is one kvmsim actor whose body is one ``while True`` loop with a single
``yield`` at its end, and each loop iteration runs exactly one of the process's ``d_step``
blocks, picked by the explicit program counter ``pc`` as in the pml. A guard that is false is
an ``await_``; two guarded commands of one process enabled at once (the host's migrate / zap,
the guest's access / APIC-mode switch) are a ``choose``. So one pan transition is one kvmsim
step, and the process-local variables are the actor's locals, reset to 0 where the pml resets
them. The safety checks are ``fail()`` calls on the raw-access branch, which still completes,
so the reachable set does not depend on them; the pml's watchdog is kvmsim's own deadlock
check (the vCPUs are daemons: a vCPU whose access budget is spent waits forever, like the
pml's vCPU at ``V_DONE``; the host finishes at ``H_DONE``).

Counting against pan (``-DNOREDUCE -DSAFETY``, see :func:`expected_counts`): pan stores its
root state before ``init`` runs, the states ``init``'s atomic block ends in (one per choice of
``virtualize_apic_accesses``), and one watchdog state per terminal state. kvmsim has no atomic
``init``; instead each vCPU's first step is one iteration of init's loop (vCPU 0 first, then
1, ...), choosing its ``virt``, and no other step is enabled before the last vCPU started.
kvmsim's root plus the states between those start steps replace pan's root.

``python bench/spin_equivalent.py [NAME]`` or ``kvmsim check bench/spin_equivalent.py:NAME``
checks one of the module-level models (``default`` is the pml's default, 2 vCPUs x 1 op).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, fields
from typing import Any

from kvmsim.engine import Model, Setup, Struct, await_, choose, fail

Steps = Generator[str, None, None]

# pfn states
P_UNUSED, P_ALLOC, P_FREED = 0, 1, 2
# vcpu->mode
OUTSIDE, IN_GUEST, EXITING = 0, 1, 2
# vcpu->requests bits
R_TLB, R_RELOAD = 1, 2
# host operation kinds (OPKIND 0 chooses one of them per operation)
K_MIGRATE, K_ZAP = 1, 2
# guest steps that may be enabled together
G_ACCESS, G_SWITCH, G_DONE = 1, 2, 3

# vCPU program counter (the pml's V_*); V_INIT is kvmsim's one step of init's loop
(V_TLBREQ, V_RLREQ, V_RL_SEQ, V_RL_PFN, V_RL_LOCK, V_ENTER, V_GUEST,
 V_PF_SEQ, V_PF_PFN, V_PF_LOCK, V_DONE) = range(11)  # fmt: skip
V_INIT = 11
# host program counter (the pml's H_*; H_HK_* are unused in v6.5)
(H_START, H_RL_REQ, H_RL_WAIT, H_FL_REQ, H_FL_WAIT, H_PTE,
 H_HK_REQ, H_HK_WAIT, H_END, H_MIG_INST, H_FREE, H_DONE) = range(12)  # fmt: skip

VIRT_MODES = ("choose", "always", "never")  # per-vCPU choice, VIRT_ALWAYS, X2APIC_ALWAYS


@dataclass(frozen=True)
class Params:
    """The pml's compile-time switches (``spin -a -DXXX``); see :meth:`spin_defines`."""

    nv: int = 2  # NV: vCPUs
    nops: int = 1  # NOPS: host operations
    acc: int = 2  # ACC: guest accesses per vCPU, 0 = unbounded
    opkind: int = 0  # OPKIND: 0 = migrate or zap per operation, 1 = migrate, 2 = zap
    virt: str = "choose"  # choose | always (VIRT_ALWAYS) | never (X2APIC_ALWAYS)
    mig_korder: bool = False  # MIG_KORDER
    steady: bool = False  # STEADY
    mode_switch: bool = False  # MODE_SWITCH
    uaf_check: bool = True  # not NO_UAF_CHECK
    notvirt_check: bool = True  # not NO_NOTVIRT_CHECK
    # Not pml switches. any_order_kicks: kvm_make_all_cpus_request visits the vCPUs in any
    # order (an over-approximation that makes the vCPUs symmetric; off = the pml's order).
    # Mutants (tests/bench/test_spin_equivalent.py patches the pml the same way):
    # reload_retry=False: the reload path writes the VMCS despite a running or completed
    # invalidation; fault_retry=False: the page fault installs a stale SPTE likewise.
    any_order_kicks: bool = False
    # symmetric (needs any_order_kicks): the vCPUs also start in any order, not init's index
    # order, and are declared interchangeable, for Options(symmetry=True)
    symmetric: bool = False
    reload_retry: bool = True
    fault_retry: bool = True

    def __post_init__(self) -> None:
        problems = [
            (not 1 <= self.nv <= 3, f"nv must be 1..3, got {self.nv}"),
            (not 1 <= self.nops <= 3, f"nops must be 1..3, got {self.nops}"),
            (self.acc < 0, f"acc must be >= 0, got {self.acc}"),
            (self.opkind not in (0, 1, 2), f"opkind must be 0, 1 or 2, got {self.opkind}"),
            (self.virt not in VIRT_MODES, f"virt must be one of {VIRT_MODES}, got {self.virt!r}"),
            (self.steady and self.acc == 0, "steady needs acc > 0 (as in the pml)"),
            (self.symmetric and not self.any_order_kicks, "symmetric needs any_order_kicks"),
        ]
        for bad, message in problems:
            if bad:
                raise ValueError(message)

    def spin_defines(self) -> list[str]:
        """The ``-D`` options that make apic_v65.pml this configuration."""
        out = [f"-DNV={self.nv}", f"-DNOPS={self.nops}", f"-DACC={self.acc}"]
        out.append(f"-DOPKIND={self.opkind}")
        flags = {
            "VIRT_ALWAYS": self.virt == "always",
            "X2APIC_ALWAYS": self.virt == "never",
            "MIG_KORDER": self.mig_korder,
            "STEADY": self.steady,
            "MODE_SWITCH": self.mode_switch,
            "NO_UAF_CHECK": not self.uaf_check,
            "NO_NOTVIRT_CHECK": not self.notvirt_check,
        }
        out += [f"-D{name}" for name, on in flags.items() if on]
        if self.any_order_kicks or self.symmetric:
            raise ValueError("any_order_kicks has no pml equivalent")
        return out

    def label(self) -> str:
        """Short name: NVxNOPS plus every switch that differs from the default."""
        base = Params()
        extra = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in ("nv", "nops") and getattr(self, f.name) != getattr(base, f.name)
        ]
        return " ".join([f"{self.nv}x{self.nops}", *extra])


class Kvm(Struct):
    """The pml's shared globals (kvm->mmu_*, the host PTE, page states, the SPTE)."""

    in_prog: int = 0  # kvm->mmu_invalidate_in_progress
    seq: int = 0  # kvm->mmu_invalidate_seq
    mmu_w: int = 0  # mmu_lock held for write (readers are single steps guarded by !mmu_w)
    pte: int = 1  # host PTE for the APIC-access hva: pfn or 0
    pte_mig: int = 0  # host PTE is a migration entry (MIG_KORDER)
    next_pfn: int = 2  # next fresh pfn for the page allocator
    pstate: tuple[int, ...] = ()  # per pfn: P_UNUSED / P_ALLOC / P_FREED
    spte: int = 0  # EPT SPTE for the APIC gfn: pfn or 0
    ndone: int = 0  # vCPUs that left the run loop
    nwarm: int = 0  # STEADY: vCPUs that completed >= 1 guest access
    cpus: tuple[Cpu, ...] = ()  # the vCPUs the host's request loops visit (never changes)
    started: int = 0  # vCPUs through their start step (init's loop)


class Cpu(Struct):
    """One vCPU's globals in the pml: req[v], mode[v], bit v of ipis; and, with
    any_order_kicks, whether the host's current request loop has visited it."""

    req: int = R_RELOAD  # vmx_vcpu_reset(): KVM_REQ_APIC_PAGE_RELOAD pending
    mode: int = OUTSIDE
    ipi: bool = False  # IPI sent, not yet acked
    kicked: bool = False


def _with(values: tuple[int, ...], index: int, value: int) -> tuple[int, ...]:
    return values[:index] + (value,) + values[index + 1 :]


def _gfn_to_pfn(k: Kvm) -> int:
    """gfn_to_pfn: the host PTE's pfn, faulting in a fresh page if there is none."""
    if k.pte == 0:
        k.pte = k.next_pfn
        k.pstate = _with(k.pstate, k.next_pfn, P_ALLOC)
        k.next_pfn += 1
    return k.pte


def _make_request(c: Cpu, request: int) -> None:
    """kvm_make_request + the IPI decision of a WAIT request (cmpxchg IN_GUEST->EXITING)."""
    c.req |= request
    if c.mode == IN_GUEST:
        c.mode = EXITING
    if c.mode != OUTSIDE:
        c.ipi = True


def _all_acked(cpus: list[Cpu]) -> bool:
    for c in cpus:
        if c.ipi:
            return False
    return True


def _not_kicked(cpus: list[Cpu]) -> tuple[int, ...]:
    return tuple(i for i, c in enumerate(cpus) if not c.kicked)


def _clear_kicked(cpus: list[Cpu]) -> None:
    for c in cpus:
        c.kicked = False


def build(**switches: Any) -> Model:
    """The kvmsim model of apic_v65.pml for these switches (the fields of :class:`Params`,
    e.g. ``build(nv=2, nops=2, acc=0, opkind=1, mig_korder=True)``)."""
    return build_params(Params(**switches))


def build_params(p: Params) -> Model:
    """The model for p (the actor functions close over p's values)."""
    NV, NOPS, ACC = p.nv, p.nops, p.acc  # noqa: N806 - the pml's names
    virt_mode, steady, mode_switch = p.virt, p.steady, p.mode_switch
    uaf_check, notvirt_check = p.uaf_check, p.notvirt_check
    opkind, mig_korder, any_order = p.opkind, p.mig_korder, p.any_order_kicks
    reload_retry, fault_retry = p.reload_retry, p.fault_retry
    symmetric = p.symmetric

    def vcpu(  # noqa: C901 - one branch per guarded command, as in the pml
        k: Kvm,
        c: Cpu,
        me: int,  # index, used by the start step only (then 0)
        pc: int = V_INIT,
        virt: int = 0,  # SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES
        tlb: int = 0,  # cached translation APIC gfn -> pfn (0 = none)
        vmcs: int = 0,  # vmcs.APIC_ACCESS_ADDR (0 = never written)
        mseq: int = 0,  # mmu_seq snapshot (reload / page fault), 0 when dead
        vpfn: int = 0,  # pfn from gfn_to_pfn, 0 when dead
        acc: int = 0,  # guest accesses done (stays 0 with ACC = 0)
        sw: int = 0,  # MODE_SWITCH: APIC mode switch done
    ) -> Steps:
        while True:
            # The step's temporaries, assigned first so that the compiler sees them dead
            # between steps and leaves them out of the state (the pml resets its tp to 0).
            step, tp, what = "", 0, 0
            if pc == V_TLBREQ:
                await_(k.started == NV)  # no vCPU runs before init's loop has ended
                step = "vcpu_enter_guest: check KVM_REQ_TLB_FLUSH"
                if c.req & R_TLB:
                    c.req &= ~R_TLB
                    tlb = 0
                pc = V_RLREQ
            elif pc == V_RLREQ:
                step = "check KVM_REQ_APIC_PAGE_RELOAD"
                if c.req & R_RELOAD:
                    c.req &= ~R_RELOAD
                    pc = V_RL_SEQ if virt else V_ENTER
                else:
                    pc = V_ENTER
            elif pc == V_ENTER:
                step = "mode = IN_GUEST_MODE; kvm_vcpu_exit_request"
                if c.req != 0:
                    pc = V_TLBREQ
                else:
                    c.mode = IN_GUEST
                    pc = V_GUEST
            elif pc == V_GUEST:
                if c.ipi:
                    step = "kick IPI: VM-Exit, ack"
                    c.mode = OUTSIDE
                    c.ipi = False
                    pc = V_TLBREQ
                else:
                    what = G_ACCESS if ACC == 0 or acc < ACC else G_DONE
                    if mode_switch and not sw:
                        what = choose((what, G_SWITCH), "guest")
                    if what == G_ACCESS:
                        step = "guest access to the APIC page"
                        if tlb != 0:
                            tp = tlb
                        elif k.spte != 0:
                            tlb = tp = k.spte
                        else:
                            tp = 0
                        if tp == 0:
                            c.mode = OUTSIDE
                            pc = V_PF_SEQ
                        else:
                            if steady and acc == 0:
                                k.nwarm += 1
                            if ACC > 0:
                                acc += 1
                            if not (virt and tp == vmcs):  # a raw memory access
                                if uaf_check and k.pstate[tp] == P_FREED:
                                    fail("use-after-free", f"guest accessed freed pfn {tp}")
                                if notvirt_check and virt:
                                    fail(
                                        "not virtualized",
                                        f"APIC access to pfn {tp} != vmcs {vmcs} not virtualized",
                                    )
                        tp = 0
                    elif what == G_SWITCH:
                        step = "guest switches APIC mode"
                        c.mode = OUTSIDE
                        sw = 1
                        virt = 1 - virt
                        if virt:
                            c.req |= R_RELOAD | R_TLB
                        pc = V_TLBREQ
                    else:
                        step = "access budget used up: leave the run loop"
                        c.mode = OUTSIDE
                        pc = V_DONE
                        k.ndone += 1
            elif pc == V_RL_SEQ:
                step = "reload: mmu_seq = mmu_invalidate_seq"
                mseq = k.seq
                pc = V_RL_PFN
            elif pc == V_RL_PFN:
                await_(not k.pte_mig)
                step = "reload: gfn_to_pfn"
                vpfn = _gfn_to_pfn(k)
                pc = V_RL_LOCK
            elif pc == V_RL_LOCK:
                await_(not k.mmu_w)
                if reload_retry and (k.in_prog > 0 or k.seq != mseq):
                    step = "reload: read_lock; retry: re-request RELOAD"
                    c.req |= R_RELOAD
                else:
                    step = "reload: read_lock; write apic_access_addr; unlock; flush"
                    vmcs = vpfn
                    tlb = 0
                mseq = vpfn = 0
                pc = V_ENTER
            elif pc == V_PF_SEQ:
                step = "page fault: mmu_seq = mmu_invalidate_seq"
                mseq = k.seq
                pc = V_PF_PFN
            elif pc == V_PF_PFN:
                await_(not k.pte_mig)
                step = "page fault: kvm_faultin_pfn"
                vpfn = _gfn_to_pfn(k)
                pc = V_PF_LOCK
            elif pc == V_PF_LOCK:
                await_(not k.mmu_w)
                if not fault_retry or (k.in_prog == 0 and k.seq == mseq):
                    step = "page fault: read_lock; install SPTE; unlock"
                    k.spte = vpfn
                else:
                    step = "page fault: stale, retry"
                mseq = vpfn = 0
                pc = V_TLBREQ
            elif pc == V_INIT:
                await_(symmetric or k.started == me)  # init's loop: in index order
                step = "start (init: choose virtualize_apic_accesses)"
                if virt_mode == "choose":
                    virt = choose((1, 0), "virtualize_apic_accesses")
                else:
                    virt = 1 if virt_mode == "always" else 0
                k.started += 1
                me = 0
                pc = V_TLBREQ
            else:  # V_DONE: back in userspace for good
                await_(False)
                step = ""
            yield step

    def host(
        k: Kvm,
        hpc: int = H_START,
        hop: int = 0,  # host operations completed
        hv: int = 0,  # vCPU index in the make_all_cpus_request loop (pml order)
        hflush: int = 0,  # kvm_unmap_gfn_range returned flush=true
        hold: int = 0,  # pfn to be freed after range_end (0 = none)
    ) -> Steps:
        while True:
            step, reload, i, last, kind = "", False, 0, False, 0  # temporaries: dead at yield
            cpus = k.cpus
            if hpc == H_START:
                await_(not k.mmu_w and k.started == NV)
                await_(not steady or hop > 0 or k.nwarm == NV)
                step = "invalidate_range_start: write_lock, in_progress++, zap SPTE"
                hflush = 1 if k.spte != 0 else 0
                k.mmu_w = 1
                k.in_prog += 1
                k.spte = 0
                hv = 0
                hpc = H_RL_REQ
            elif hpc == H_RL_REQ or hpc == H_FL_REQ:
                reload = hpc == H_RL_REQ
                step = "request APIC_PAGE_RELOAD" if reload else "request TLB_FLUSH"
                if any_order:
                    i = choose(_not_kicked(cpus), "vCPU")
                    cpus[i].kicked = True
                    _make_request(cpus[i], R_RELOAD if reload else R_TLB)
                    last = not _not_kicked(cpus)
                    if last:
                        _clear_kicked(cpus)
                else:
                    _make_request(cpus[hv], R_RELOAD if reload else R_TLB)
                    hv += 1
                    last = hv == NV
                    if last:
                        hv = 0
                if last:
                    hpc = H_RL_WAIT if reload else H_FL_WAIT
            elif hpc == H_RL_WAIT:
                await_(_all_acked(cpus))
                if hflush:
                    step = "all acked"
                    hpc = H_FL_REQ
                else:
                    step = "all acked; write_unlock (no remote TLB flush)"
                    k.mmu_w = 0
                    hpc = H_PTE
            elif hpc == H_FL_WAIT:
                await_(_all_acked(cpus))
                step = "all acked; write_unlock"
                k.mmu_w = 0
                hpc = H_PTE
            elif hpc == H_PTE:
                if opkind == 0:
                    kind = choose((K_MIGRATE, K_ZAP), "host operation")
                else:
                    kind = K_MIGRATE if opkind == 1 else K_ZAP
                hold = k.pte
                if kind == K_ZAP:
                    step = "zap the host PTE"
                    k.pte = 0
                elif k.pte != 0 and mig_korder:
                    step = "migrate: PTE -> migration entry"
                    k.pte = 0
                    k.pte_mig = 1
                elif k.pte != 0:
                    step = "migrate: PTE -> new page"
                    k.pte = k.next_pfn
                    k.pstate = _with(k.pstate, k.next_pfn, P_ALLOC)
                    k.next_pfn += 1
                else:
                    step = "migrate: no PTE"
                hpc = H_END
            elif hpc == H_END:
                await_(not k.mmu_w)
                step = "invalidate_range_end: seq++, in_progress--"
                k.seq += 1
                k.in_prog -= 1
                hpc = H_MIG_INST if k.pte_mig else H_FREE
            elif hpc == H_MIG_INST:
                step = "remove_migration_ptes: install the new page"
                k.pte = k.next_pfn
                k.pstate = _with(k.pstate, k.next_pfn, P_ALLOC)
                k.next_pfn += 1
                k.pte_mig = 0
                hpc = H_FREE
            else:  # H_FREE
                step = "free the old page"
                if hold != 0:
                    k.pstate = _with(k.pstate, hold, P_FREED)
                hold = hflush = 0
                hop += 1
                hpc = H_START if hop < NOPS else H_DONE
                if hpc == H_DONE:
                    return
            yield step

    model = Model(
        f"apic_v65 {p.label()}",
        "apic_v65.pml in kvmsim: the v6.5 APIC-access page reload protocol, SPIN's benchmark",
        expect="holds" if p.reload_retry and p.fault_retry else "violates",
    )

    @model.setup
    def setup(s: Setup) -> Kvm:
        pstate = [P_UNUSED] * (NOPS + 2)  # NPFN
        pstate[1] = P_ALLOC  # the initial APIC-access page, mapped by the host PTE
        cpus = tuple(Cpu() for _ in range(NV))
        k = Kvm(pstate=tuple(pstate), cpus=cpus)
        s.actor("host", host, k, lane="host")
        for i, c in enumerate(cpus):
            s.actor(f"vcpu{i}", vcpu, k, c, 0 if symmetric else i, daemon=True, lane=f"CPU{i}")
        if symmetric:
            s.symmetric([(f"vcpu{i}", (c,)) for i, c in enumerate(cpus)], unordered=[(k, "cpus")])
        return k

    return model


def start_counts(p: Params) -> tuple[int, int]:
    """(states, transitions) of kvmsim's start steps that pan folds into init's atomic block:
    the root and the states between vCPU start steps, and the start steps themselves."""
    c = 2 if p.virt == "choose" else 1
    return sum(c**i for i in range(p.nv)), sum(c**i for i in range(1, p.nv + 1))


def expected_counts(
    p: Params, pan_states: int, pan_transitions: int, terminal: int
) -> tuple[int, int]:
    """kvmsim's (states, transitions) for pan's counts of the same switches: the pml
    header's formula (states - 1 - T, transitions - 1 - n_init - T) plus kvmsim's start
    steps. terminal: T, the number of terminal states (kvmsim reports them)."""
    n_init = 2**p.nv if p.virt == "choose" else 1
    extra_states, extra_transitions = start_counts(p)
    return (
        pan_states - 1 - terminal + extra_states,
        pan_transitions - 1 - n_init - terminal + extra_transitions,
    )


default = build()  # the pml's defaults: 2 vCPUs x 1 operation, 2 accesses each
one_vcpu = build(nv=1)
two_by_two = build(nv=2, nops=2)
no_reload_retry = build(nv=1, reload_retry=False)  # mutant: the VMCS gets a stale page
no_fault_retry = build(nv=1, fault_retry=False)  # mutant: the SPTE gets a stale page


if __name__ == "__main__":
    import sys

    from kvmsim.engine import check

    name = sys.argv[1] if len(sys.argv) > 1 else "default"
    result = check(globals()[name])
    print(f"{name}: {result.verdict} ({result.stats.states} states)")
