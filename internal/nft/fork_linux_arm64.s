// The closer's clone sharing memory, for arm64: see cloneVM in
// fork_linux_clonevm.go and the top of fork_linux.go.

#include "textflag.h"

#define SYS_munmap	215
#define SYS_clone	220
#define SYS_exit_group	94

// func cloneVM(flags, stack, size uintptr, p *closerPlan, child func(*closerPlan) uintptr) (pid, errno uintptr)
TEXT ·cloneVM(SB),NOSPLIT|NOFRAME,$0-56
	MOVD	flags+0(FP), R0
	MOVD	stack+8(FP), R19
	MOVD	size+16(FP), R20
	MOVD	p+24(FP), R21
	MOVD	child+32(FP), R22
	ADD	R19, R20, R1	// the child's stack pointer: the top
	MOVD	$0, R2	// parent_tid
	MOVD	$0, R3	// tls
	MOVD	$0, R4	// child_tid
	MOVD	$SYS_clone, R8
	SVC
	// The system call keeps every register but R0, in the child too:
	// R19-R22 still hold the stack, p and child.
	CBZ	R0, child
	CMN	$4095, R0
	BCC	ok
	NEG	R0, R0
	MOVD	ZR, pid+40(FP)
	MOVD	R0, errno+48(FP)
	RET
ok:
	MOVD	R0, pid+40(FP)
	MOVD	ZR, errno+48(FP)
	RET

child:
	// On the new stack; the parent's stack, behind FP, belongs to the
	// parent's running thread and is not touched. The frame (16-byte
	// aligned): the callee's saved LR slot, the spill slot of child's
	// argument, a free slot, then the stack's address and size.
	SUB	$48, RSP
	MOVD	R19, 24(RSP)
	MOVD	R20, 32(RSP)
	// child(p) through its func value, straight to its ABIInternal code
	// (the ABI0 wrapper a symbol reference would call is instrumented in
	// race builds): p in R0, the closure context in R26. R28, the g
	// register, still holds the forking goroutine's g; nosplit, norace
	// code never uses it.
	MOVD	R21, R0
	MOVD	R22, R26
	MOVD	0(R26), R23
	CALL	(R23)
	// Everything still needed goes into registers; then the stack goes.
	MOVD	R0, R19
	MOVD	24(RSP), R0
	MOVD	32(RSP), R1
	MOVD	$SYS_munmap, R8
	SVC
	MOVD	R19, R0
exit:
	MOVD	$SYS_exit_group, R8
	SVC
	MOVD	$2, R0
	B	exit
