/* Cleave boot entry: Multiboot v1 header, 32-bit protected mode to 64-bit long mode.
 *
 * The loader enters _start32 in 32-bit protected mode, paging off, with eax = Multiboot
 * magic and ebx = physical address of the Multiboot information. This code builds the boot
 * page tables, enables long mode and calls kernel_entry(magic, info, boot_tsc) in the
 * higher half on the kernel stack. Boot page tables map:
 *   - physical 0..4 GiB identity (PML4[0]), only until the kernel builds user spaces;
 *   - physical 0..4 GiB at PHYSMAP_BASE 0xffff800000000000 (PML4[256]): the direct map;
 *   - physical 0..1 GiB at KERNEL_BASE 0xffffffff80000000 (PML4[511], PDPT[510]): the image.
 * All with 2 MiB pages. */

    .set MULTIBOOT_MAGIC, 0x1badb002
    .set MULTIBOOT_FLAGS, 0x00010003   /* page-aligned modules, memory map, a.out kludge */

    .section .multiboot, "a"
    .balign 4
multiboot_header:
    .long MULTIBOOT_MAGIC
    .long MULTIBOOT_FLAGS
    .long -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)
    .long multiboot_header      /* header_addr */
    .long __load_start_phys     /* load_addr */
    .long __load_end_phys       /* load_end_addr */
    .long __bss_end_phys        /* bss_end_addr */
    .long _start32              /* entry_addr */

    .section .boot.text, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    mov %eax, boot_magic
    mov %ebx, boot_info
    rdtsc
    mov %eax, boot_tsc
    mov %edx, boot_tsc + 4
    mov $boot_stack_top, %esp

    /* Long mode available? CPUID 0x80000001 EDX bit 29. */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    test $(1 << 29), %edx
    jz no_long_mode

    /* PML4[0] and PML4[256] -> boot_pdpt_low; PML4[511] -> boot_pdpt_high. */
    mov $boot_pdpt_low, %eax
    or $3, %eax
    mov %eax, boot_pml4
    mov %eax, boot_pml4 + 256 * 8
    mov $boot_pdpt_high, %eax
    or $3, %eax
    mov %eax, boot_pml4 + 511 * 8

    /* boot_pdpt_low[0..4] -> the four page directories; boot_pdpt_high[510] -> the first. */
    mov $boot_pd, %eax
    or $3, %eax
    mov %eax, boot_pdpt_high + 510 * 8
    mov $boot_pdpt_low, %edi
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    dec %ecx
    jnz 1b

    /* 2048 entries of 2 MiB: present, writable, page size; the top GiB (the MMIO hole:
     * local APIC, I/O APIC, PCI windows) also cache-disabled and write-through. */
    mov $boot_pd, %edi
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    cmp $1536, %ecx
    jb 5f
    or $0x18, %eax
5:  mov %eax, (%edi, %ecx, 8)
    movl $0, 4(%edi, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    mov %cr4, %eax
    or $(1 << 5), %eax          /* PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* IA32_EFER */
    rdmsr
    or $(1 << 8), %eax          /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax        /* PG | WP | PE */
    mov %eax, %cr0
    lgdt boot_gdt_pointer
    ljmp $0x08, $long_mode_start

no_long_mode:
    mov $no_long_mode_message, %esi
    mov $0x3f8, %dx
3:  lodsb
    test %al, %al
    jz 4f
    out %al, %dx
    jmp 3b
4:  cli
    hlt
    jmp 4b

    .code64
long_mode_start:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    movabs $__kernel_stack_top, %rsp
    mov boot_magic, %edi
    mov boot_info, %esi
    mov boot_tsc, %rdx
    xor %ebp, %ebp
    movabs $kernel_entry, %rax
    call *%rax
    ud2

    .section .boot.data, "aw", @progbits
    .balign 4096
boot_pml4:      .space 4096
boot_pdpt_low:  .space 4096
boot_pdpt_high: .space 4096
boot_pd:        .space 4096 * 4
boot_stack:     .space 1024
boot_stack_top:
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code, ring 0 */
    .quad 0x00cf92000000ffff    /* 0x10: data, ring 0 */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
boot_magic:     .long 0
boot_info:      .long 0
    .balign 8
boot_tsc:       .quad 0
no_long_mode_message:
    .asciz "cleave: this processor has no 64-bit long mode; cannot boot\r\n"

    .section .bss.kernel_stack, "aw", @nobits
    .balign 16
    .global __kernel_stack_bottom
__kernel_stack_bottom:
    .space 64 * 1024
    .global __kernel_stack_top
__kernel_stack_top:
    .global __double_fault_stack_bottom
__double_fault_stack_bottom:
    .space 16 * 1024
    .global __double_fault_stack_top
__double_fault_stack_top:
    .global __nmi_stack_bottom
__nmi_stack_bottom:
    .space 16 * 1024
    .global __nmi_stack_top
__nmi_stack_top:
