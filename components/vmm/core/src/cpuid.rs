//! The CPUID a guest sees (the VMM's answer to a CPUID exit): Cleave's policy applied to what the host processor reports.
//! A guest gets one processor with 64-bit mode, NX, SSE up to SSE4.2, POPCNT, AES,
//! RDRAND and the bit-manipulation extensions, and is told it runs under a hypervisor
//! (leaf 1 ECX bit 31, leaves 0x4000_0000.. say "CleaveCleave"). Everything the VMM does
//! not emulate or that would give the guest the host's machinery is hidden: VMX and SVM,
//! SMX, the local APIC and x2APIC (guests get 8259 PICs), XSAVE and AVX (state the VMM
//! does not manage), performance monitoring, thermal and power management, monitor/mwait,
//! machine-check, debug store, TSX, SGX, processor trace, topology leaves. Leaves above
//! the supported ranges read as zeros, as on hardware.

/// Basic leaves offered (0..=MAX_BASIC).
pub const MAX_BASIC: u32 = 0x7;
/// Extended leaves offered (0x8000_0000..=MAX_EXTENDED).
pub const MAX_EXTENDED: u32 = 0x8000_0008;
/// The hypervisor leaf range's first leaf.
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;

/// `[eax, ebx, ecx, edx]`.
pub type Regs = [u32; 4];

const fn bits(list: &[u32]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < list.len() {
        m |= 1 << list[i];
        i += 1;
    }
    m
}

/// Leaf 1 ECX kept: SSE3, PCLMULQDQ, SSSE3, CX16, SSE4.1, SSE4.2, MOVBE, POPCNT, AES,
/// RDRAND (not FMA, which needs AVX state).
const LEAF1_ECX: u32 = bits(&[0, 1, 9, 13, 19, 20, 22, 23, 25, 30]);
/// Leaf 1 EDX kept: FPU, VME, DE, PSE, TSC, MSR, PAE, CX8, SEP, PGE, CMOV, PAT, PSE36,
/// CLFSH, MMX, FXSR, SSE, SSE2 (not MTRR: memory types are the host's under nested
/// paging, and the VMM has no MTRR MSRs to offer).
const LEAF1_EDX: u32 = bits(&[0, 1, 2, 3, 4, 5, 6, 8, 11, 13, 15, 16, 17, 19, 23, 24, 25, 26]);
/// Leaf 7 EBX kept: FSGSBASE, BMI1, SMEP, BMI2, ERMS, ADX, SMAP, CLFLUSHOPT.
const LEAF7_EBX: u32 = bits(&[0, 3, 7, 8, 9, 19, 20, 23]);
/// 0x8000_0001 ECX kept: LAHF/SAHF, ABM (LZCNT), PREFETCHW.
const EXT1_ECX: u32 = bits(&[0, 5, 8]);
/// 0x8000_0001 EDX kept: SYSCALL, NX, LM (not RDTSCP: its TSC_AUX MSR is not switched
/// between guests).
const EXT1_EDX: u32 = bits(&[11, 20, 29]);
/// Leaf 1 ECX: running under a hypervisor.
const HYPERVISOR_BIT: u32 = 1 << 31;

/// What the guest sees for `leaf`/`subleaf`, given the host's answers.
pub fn guest(host: impl Fn(u32, u32) -> Regs, leaf: u32, subleaf: u32) -> Regs {
    match leaf {
        0 => {
            let [max, b, c, d] = host(0, 0);
            [max.min(MAX_BASIC), b, c, d]
        }
        1 => {
            let [a, b, c, d] = host(1, 0);
            // EBX: brand index and CLFLUSH line size kept; one logical processor, APIC id 0.
            let b = (b & 0xffff) | (1 << 16);
            [a, b, (c & LEAF1_ECX) | HYPERVISOR_BIT, d & LEAF1_EDX]
        }
        7 if subleaf == 0 => {
            let [_, b, _, _] = host(7, 0);
            [0, b & LEAF7_EBX, 0, 0]
        }
        2..=MAX_BASIC => [0; 4],
        HYPERVISOR_LEAF => {
            let w = |s: &[u8; 4]| u32::from_le_bytes(*s);
            [HYPERVISOR_LEAF, w(b"Clea"), w(b"veCl"), w(b"eave")]
        }
        0x8000_0000 => {
            let [max, ..] = host(0x8000_0000, 0);
            [max.clamp(0x8000_0000, MAX_EXTENDED), 0, 0, 0]
        }
        0x8000_0001 => {
            let [a, _, c, d] = host(0x8000_0001, 0);
            [a, 0, c & EXT1_ECX, d & EXT1_EDX]
        }
        // Brand string.
        0x8000_0002..=0x8000_0004 => host(leaf, 0),
        0x8000_0008 => {
            // Physical and linear address sizes; no core count.
            let [a, ..] = host(0x8000_0008, 0);
            [a & 0xffff, 0, 0, 0]
        }
        _ => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that reports every feature bit, with Intel's vendor string.
    fn everything(leaf: u32, _: u32) -> Regs {
        match leaf {
            0 => [
                0x16,
                u32::from_le_bytes(*b"Genu"),
                u32::from_le_bytes(*b"ntel"),
                u32::from_le_bytes(*b"ineI"),
            ],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0008 => [0x3027, 0, 0xff, 0],
            _ => [0xffff_ffff; 4],
        }
    }

    #[test]
    fn the_guest_sees_one_plain_processor_under_a_hypervisor() {
        let g = |leaf, sub| guest(everything, leaf, sub);
        assert_eq!(g(0, 0)[0], MAX_BASIC);
        assert_eq!(g(0, 0)[1], u32::from_le_bytes(*b"Genu"), "the vendor is the host's");
        let [_, b, c, d] = g(1, 0);
        assert_eq!(c & (1 << 5), 0, "no VMX");
        assert_eq!(c & (1 << 31), 1 << 31, "hypervisor present");
        assert_eq!(c & ((1 << 26) | (1 << 27) | (1 << 28)), 0, "no XSAVE, OSXSAVE, AVX");
        assert_eq!(c & (1 << 21), 0, "no x2APIC");
        assert_eq!(d & (1 << 9), 0, "no local APIC");
        assert_eq!(d & (1 << 28), 0, "no hyper-threading");
        assert_eq!(d & (1 << 25), 1 << 25, "SSE");
        assert_eq!(b >> 16, 1, "one logical processor, APIC id 0");
        assert_eq!(g(7, 0)[1] & (1 << 5), 0, "no AVX2");
        assert_eq!(g(7, 0)[1] & (1 << 7), 1 << 7, "SMEP");
        assert_eq!(g(7, 1), [0; 4]);
        assert_eq!(g(0xb, 0), [0; 4], "no topology leaf");
        assert_eq!(g(0x8000_0001, 0)[3] & (1 << 29), 1 << 29, "long mode");
        assert_eq!(g(0x8000_0001, 0)[2] & (1 << 2), 0, "no SVM");
        assert_eq!(g(0x8000_0008, 0), [0x3027, 0, 0, 0]);
        assert_eq!(g(0x8000_0009, 0), [0; 4]);
    }

    #[test]
    fn the_hypervisor_leaf_names_cleave() {
        let [max, b, c, d] = guest(everything, HYPERVISOR_LEAF, 0);
        let mut name = [0u8; 12];
        name[..4].copy_from_slice(&b.to_le_bytes());
        name[4..8].copy_from_slice(&c.to_le_bytes());
        name[8..].copy_from_slice(&d.to_le_bytes());
        assert_eq!((max, &name), (HYPERVISOR_LEAF, b"CleaveCleave"));
    }

    #[test]
    fn a_smaller_host_keeps_its_limits() {
        let small = |leaf: u32, sub: u32| match leaf {
            0 => [0x2, 0, 0, 0],
            0x8000_0000 => [0x8000_0001, 0, 0, 0],
            _ => everything(leaf, sub),
        };
        assert_eq!(guest(small, 0, 0)[0], 2);
        assert_eq!(guest(small, 0x8000_0000, 0)[0], 0x8000_0001);
    }
}
