// The closer's clone sharing memory, for amd64: see cloneVM in
// fork_linux_clonevm.go and the top of fork_linux.go.

#include "textflag.h"

#define SYS_munmap	11
#define SYS_clone	56
#define SYS_exit_group	231

// func cloneVM(flags, stack, size uintptr, p *closerPlan, child func(*closerPlan) uintptr) (pid, errno uintptr)
TEXT ·cloneVM(SB),NOSPLIT|NOFRAME,$0-56
	MOVQ	flags+0(FP), DI
	MOVQ	stack+8(FP), R12
	MOVQ	size+16(FP), R13
	MOVQ	p+24(FP), BX
	MOVQ	child+32(FP), R9	// clone has five arguments: R9 is free
	LEAQ	(R12)(R13*1), SI	// the child's stack pointer: the top
	MOVQ	$0, DX	// parent_tid
	MOVQ	$0, R10	// child_tid
	MOVQ	$0, R8	// tls
	MOVQ	$SYS_clone, AX
	SYSCALL
	// The system call keeps every register but AX, CX and R11, in the
	// child too: BX, R9, R12 and R13 still hold p, child and the stack.
	TESTQ	AX, AX
	JEQ	child
	CMPQ	AX, $0xfffffffffffff001
	JLS	ok
	NEGQ	AX
	MOVQ	$0, pid+40(FP)
	MOVQ	AX, errno+48(FP)
	RET
ok:
	MOVQ	AX, pid+40(FP)
	MOVQ	$0, errno+48(FP)
	RET

child:
	// On the new stack; the parent's stack, behind FP, belongs to the
	// parent's running thread and is not touched. The frame: the spill
	// slot of child's argument, then the stack's address and size.
	SUBQ	$32, SP
	MOVQ	R12, 16(SP)
	MOVQ	R13, 24(SP)
	// child(p) through its func value, straight to its ABIInternal code
	// (the ABI0 wrapper a symbol reference would call is instrumented in
	// race builds): p in AX, the closure context in DX, X15 zero. R14,
	// the g register, still holds the forking goroutine's g; nosplit,
	// norace code never uses it.
	MOVQ	BX, AX
	MOVQ	R9, DX
	XORPS	X15, X15
	MOVQ	0(DX), CX
	CALL	CX
	// Everything still needed goes into registers; then the stack goes.
	MOVQ	AX, BX
	MOVQ	16(SP), DI
	MOVQ	24(SP), SI
	MOVQ	$SYS_munmap, AX
	SYSCALL
	MOVQ	BX, DI
exit:
	MOVQ	$SYS_exit_group, AX
	SYSCALL
	MOVQ	$2, DI
	JMP	exit
