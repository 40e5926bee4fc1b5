//! The MMIO test device: one page of guest-physical address space with nothing behind it
//! in EPT, so every access is an EPT violation the VMM emulates. Registers (little-endian,
//! any access size): 0x0 scratch (read/write), 0x4 identification `CLEV` (read only),
//! 0x8 how many accesses came before this one (read only).

/// Where the device sits in guest-physical space.
pub const BASE: u64 = 0xd000_0000;
/// Its size.
pub const SIZE: u64 = 0x1000;
/// What register 0x4 reads: "CLEV" in memory order.
pub const ID: u64 = u32::from_le_bytes(*b"CLEV") as u64;

/// Whether `gpa` is the device's.
pub fn contains(gpa: u64) -> bool {
    (BASE..BASE + SIZE).contains(&gpa)
}

/// The device's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestDevice {
    /// The scratch register.
    pub scratch: u64,
    /// Reads so far.
    pub reads: u64,
    /// Writes so far.
    pub writes: u64,
}

impl TestDevice {
    /// A read of `size` bytes at `offset`.
    pub fn read(&mut self, offset: u64, size: usize) -> u64 {
        let before = self.reads + self.writes;
        self.reads += 1;
        let value = match offset {
            0 => self.scratch,
            4 => ID,
            8 => before,
            _ => 0,
        };
        if size >= 8 { value } else { value & ((1 << (size * 8)) - 1) }
    }

    /// A write of `size` bytes at `offset` (only the scratch register keeps it).
    pub fn write(&mut self, offset: u64, size: usize, value: u64) {
        self.writes += 1;
        if offset == 0 {
            self.scratch = if size >= 8 { value } else { value & ((1 << (size * 8)) - 1) };
        }
    }
}
