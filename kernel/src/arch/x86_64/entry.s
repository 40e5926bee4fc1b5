/* Kernel entry and exit stubs. They only save and restore state and call safe Rust
 * handlers; all decisions are made in Rust.
 *
 * Every entry builds a TrapFrame (see trap.rs) on the kernel stack:
 *   r15 r14 r13 r12 r11 r10 r9 r8 rbp rdi rsi rdx rcx rbx rax vector error rip cs rflags rsp ss
 * (lowest address first). Exceptions get rip..ss from the CPU; `syscall` entry builds the
 * same shape by hand, so that a thread's saved state looks the same however it entered;
 * it leaves through sysretq where that is safe and iretq otherwise.
 *
 * `syscall` builds its frame not on the kernel stack but in the current thread's TCB
 * (SYSCALL_FRAME_TOP, kept by the kernel, is the end of its saved registers), and leaves
 * by restoring the frame whose address syscall_dispatch returns (the TCB of the thread
 * that runs next): the IPC fast path copies no register block. */

    .set SYSCALL_VECTOR, 0x100
    .set COMPAT_SYSCALL_VECTOR, 0x101
    .set USER_CODE_SELECTOR, 0x23
    .set USER_DATA_SELECTOR, 0x1b
    .set FRAME_RIP, 17 * 8          /* offset of rip in TrapFrame */
    .set FRAME_VECTOR, 15 * 8       /* offset of vector in TrapFrame */

    .macro SAVE_GPRS
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    .endm

    .macro RESTORE_GPRS
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    .endm

    .section .text.cleave_entry, "ax"
    .code64

/* Flags user code may set that the kernel must not run with: DF (the System V ABI wants
 * it clear; the kernel's memcpy would copy backwards) and, where SMAP is on, AC (which
 * would switch SMAP off). `syscall` clears both through IA32_FMASK; interrupts and
 * exceptions do not. */
    .macro CLEAR_USER_FLAGS
    cld
    cmpb $0, SMAP_ON(%rip)
    je 1f
    clac
1:
    .endm

/* Exception stubs: vectors with a CPU-pushed error code skip the dummy push. */
    .macro EXCEPTION_STUB vector
    .balign 16
exception_stub_\vector:
    .if (\vector == 8) || (\vector == 10) || (\vector == 11) || (\vector == 12) || (\vector == 13) || (\vector == 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    .else
    push $0
    .endif
    push $\vector
    jmp exception_common
    .endm

    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    EXCEPTION_STUB \v
    .endr

/* Interrupt stubs: PIC lines (0x20-0x2f), the local APIC timer (0x30), spurious (0xff). */
    .macro INTERRUPT_STUB vector
    .balign 16
interrupt_stub_\vector:
    push $0
    push $\vector
    jmp interrupt_common
    .endm

    .irp v, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,255
    INTERRUPT_STUB \v
    .endr

interrupt_common:
    SAVE_GPRS
    /* The interrupted thread may be in a backwards `rep movs` (DF set); the saved RFLAGS
     * gives it back its flags. */
    CLEAR_USER_FLAGS
    mov %rsp, %rdi
    call interrupt_entry
    RESTORE_GPRS
    add $16, %rsp
    iretq

exception_common:
    SAVE_GPRS
    CLEAR_USER_FLAGS            /* as in interrupt_common */
    mov %rsp, %rdi
    call exception_entry
    RESTORE_GPRS
    add $16, %rsp
    iretq

/* Saves a `syscall`'s state into the current thread's TCB (the frame ends at
 * SYSCALL_FRAME_TOP) with `vector`, and moves to the kernel stack. Interrupts are masked by
 * IA32_FMASK; rcx = user rip, r11 = user rflags, rsp = user stack. Single core: the user
 * rsp parks in a static until pushed. */
    .macro SYSCALL_SAVE vector
    mov %rsp, syscall_user_rsp(%rip)
    mov SYSCALL_FRAME_TOP(%rip), %rsp
    push $USER_DATA_SELECTOR
    push syscall_user_rsp(%rip)
    push %r11
    push $USER_CODE_SELECTOR
    push %rcx
    push $0
    push $\vector
    SAVE_GPRS
    movabs $__kernel_stack_top, %rsp
    .endm

/* System call entry. */
    .global syscall_entry
syscall_entry:
    SYSCALL_SAVE SYSCALL_VECTOR
    call syscall_dispatch
syscall_return:
    mov %rax, %rsp
    /* Return with sysretq only to a thread that entered with `syscall` (whose rcx and r11
     * the call destroys anyway) and whose rip is a canonical user address (sysretq with a
     * non-canonical rcx would fault in ring 0 on the user stack). A thread an interrupt or
     * exception stopped, or whose registers were written, needs every register back:
     * iretq. */
    cmpq $SYSCALL_VECTOR, FRAME_VECTOR(%rsp)
    jne 1f
    mov FRAME_RIP(%rsp), %rcx
    shr $47, %rcx
    jnz 1f
    RESTORE_GPRS
    add $16, %rsp
    mov 0(%rsp), %rcx           /* rip */
    mov 16(%rsp), %r11          /* rflags */
    mov 24(%rsp), %rsp          /* user rsp: nothing may interrupt from here (NMI has its own stack) */
    sysretq
1:  RESTORE_GPRS
    add $16, %rsp
    iretq

/* `syscall` from a compatibility-mode code segment enters here (IA32_CSTAR). Cleave's GDT
 * has no such segment, so no thread should reach it; if one does, it is saved like any
 * system call but with COMPAT_SYSCALL_VECTOR, and syscall_compat_dispatch turns it into a
 * fault of that thread. It leaves through iretq (the vector is not SYSCALL_VECTOR). */
    .global syscall_compat_entry
syscall_compat_entry:
    SYSCALL_SAVE COMPAT_SYSCALL_VECTOR
    call syscall_compat_dispatch
    jmp syscall_return

/* enter_user(frame: *const TrapFrame) -> !: loads every register from the frame and
 * returns to the mode it describes. */
    .global enter_user
enter_user:
    mov %rdi, %rsp
    RESTORE_GPRS
    add $16, %rsp
    iretq

/* A guest's general registers as vmx.rs and svm.rs keep them, at (%rdi): rax rbx rcx rdx
 * rsi rdi rbp r8-r15, 8 bytes each. LOAD_GUEST_GPRS loads all but rax (each entry path
 * has its own way with it), rdi last; STORE_GUEST_GPRS stores all but rax and rdi, which
 * the exit paths hold elsewhere at that moment. Neither changes the flags. */
.macro LOAD_GUEST_GPRS
    mov 8(%rdi), %rbx
    mov 16(%rdi), %rcx
    mov 24(%rdi), %rdx
    mov 32(%rdi), %rsi
    mov 48(%rdi), %rbp
    mov 56(%rdi), %r8
    mov 64(%rdi), %r9
    mov 72(%rdi), %r10
    mov 80(%rdi), %r11
    mov 88(%rdi), %r12
    mov 96(%rdi), %r13
    mov 104(%rdi), %r14
    mov 112(%rdi), %r15
    mov 40(%rdi), %rdi
.endm
.macro STORE_GUEST_GPRS
    mov %rbx, 8(%rdi)
    mov %rcx, 16(%rdi)
    mov %rdx, 24(%rdi)
    mov %rsi, 32(%rdi)
    mov %rbp, 48(%rdi)
    mov %r8, 56(%rdi)
    mov %r9, 64(%rdi)
    mov %r10, 72(%rdi)
    mov %r11, 80(%rdi)
    mov %r12, 88(%rdi)
    mov %r13, 96(%rdi)
    mov %r14, 104(%rdi)
    mov %r15, 112(%rdi)
.endm

/* vmx_run(gprs: *mut [u64; 15], launched: u64) -> u64 (vmx.rs): enters the guest of the
 * current VMCS with its general registers loaded from gprs (rax rbx rcx rdx rsi rdi rbp
 * r8-r15), by VMLAUNCH or (launched != 0) VMRESUME. A failed entry returns 1
 * (VMfailInvalid) or 2 (VMfailValid) at once. A VM exit lands in vmx_exit with the stack
 * as it was at the entry (HOST_RSP, written here), saves the guest's registers to gprs and
 * returns 0. Interrupts are off throughout. */
    .global vmx_run
vmx_run:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi                   /* gprs, for the exit */
    mov $0x6c14, %rax           /* HOST_RSP */
    vmwrite %rsp, %rax
    jbe 3f
    test %rsi, %rsi             /* flags survive the moves below */
    mov 0(%rdi), %rax
    LOAD_GUEST_GPRS
    jnz 1f
    vmlaunch
    jmp 2f
1:  vmresume
2:  /* The entry failed: CF set = VMfailInvalid, ZF set = VMfailValid. */
    mov $2, %eax
    jnc 4f
3:  mov $1, %eax
4:  pop %rdi
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

    .global vmx_exit
vmx_exit:
    push %rdi                   /* the guest's rdi; gprs is above it */
    mov 8(%rsp), %rdi
    mov %rax, 0(%rdi)
    STORE_GUEST_GPRS
    pop %rax
    mov %rax, 40(%rdi)
    pop %rdi
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    xor %eax, %eax
    ret

    .section .rodata.cleave_entry, "a"
    .balign 8
    .global exception_stub_table
exception_stub_table:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\v
    .endr

    .balign 8
    .global interrupt_stub_table
interrupt_stub_table:
    .irp v, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,255
    .quad interrupt_stub_\v
    .endr

    .section .bss.cleave_entry, "aw", @nobits
    .balign 8
syscall_user_rsp:
    .quad 0

/* svm_run(gprs: *mut [u64; 15], vmcb: u64, host_state: u64) (svm.rs): saves the host's
 * VMLOAD state to host_state, loads the guest's registers but rax (the VMCB holds it) from
 * gprs, runs the guest with GIF clear and IF set (a physical interrupt then exits), stores
 * the registers back, clears IF, reloads the host's state and sets GIF again. The SVM
 * instructions are written as bytes: vmsave 0f 01 db, vmload 0f 01 da, vmrun 0f 01 d8,
 * clgi 0f 01 dd, stgi 0f 01 dc (rax holds the physical address). */
    .section .text.cleave_entry, "ax"
    .global svm_run
svm_run:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi                   /* gprs, 16(%rsp) */
    push %rsi                   /* vmcb, 8(%rsp) */
    push %rdx                   /* host state, 0(%rsp) */
    mov %rdx, %rax
    .byte 0x0f, 0x01, 0xdb      /* vmsave: the host's FS, GS, TR, LDTR and MSRs */
    .byte 0x0f, 0x01, 0xdd      /* clgi */
    sti                         /* held off by GIF until the guest runs */
    mov 8(%rsp), %rax
    LOAD_GUEST_GPRS
    .byte 0x0f, 0x01, 0xda      /* vmload: the guest's */
    .byte 0x0f, 0x01, 0xd8      /* vmrun */
    .byte 0x0f, 0x01, 0xdb      /* vmsave: the guest's */
    push %rdi                   /* the guest's rdi; gprs is now at 24(%rsp) */
    mov 24(%rsp), %rdi
    STORE_GUEST_GPRS
    pop %rax
    mov %rax, 40(%rdi)
    cli
    mov 0(%rsp), %rax
    .byte 0x0f, 0x01, 0xda      /* vmload: the host's again */
    .byte 0x0f, 0x01, 0xdc      /* stgi */
    add $24, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
