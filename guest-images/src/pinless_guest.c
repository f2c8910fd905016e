/*
 * pinless-guest: the tiny helper the test image's /init uses to talk to pinless
 * through the debug ports of docs/guest-abi.md.
 *
 *   pinless-guest marker N   write N (1..127) to port 0xf4 (1 = boot complete)
 *   pinless-guest status N   write N (0..255) to port 0xf5 (exit status)
 *
 * Built without libc (-nostdlib, raw syscalls): a few KiB, so /init can run it
 * as its very first action without the startup cost of a static glibc binary.
 * Exit status: 0 on success, 1 on bad arguments, 2 if ioperm() failed.
 */
#define SYS_write 1
#define SYS_ioperm 173
#define SYS_exit_group 231

static long sys3(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

static void say(const char *s)
{
	long n = 0;
	while (s[n])
		n++;
	sys3(SYS_write, 2, (long)s, n);
}

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/* Decimal 0..255, or -1. */
static int parse_u8(const char *s)
{
	int v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > 255)
			return -1;
	}
	return v;
}

static int run(int argc, char **argv)
{
	if (argc != 3) {
		say("usage: pinless-guest marker N | status N\n");
		return 1;
	}
	int port;
	int v = parse_u8(argv[2]);
	if (streq(argv[1], "marker")) {
		port = 0xf4;
		if (v < 1 || v > 0x7f) {
			say("pinless-guest: marker must be 1..127\n");
			return 1;
		}
	} else if (streq(argv[1], "status")) {
		port = 0xf5;
		if (v < 0) {
			say("pinless-guest: status must be 0..255\n");
			return 1;
		}
	} else {
		say("usage: pinless-guest marker N | status N\n");
		return 1;
	}
	if (sys3(SYS_ioperm, port, 1, 1) != 0) {
		say("pinless-guest: ioperm failed (not root?)\n");
		return 2;
	}
	__asm__ volatile("outb %b0, %w1" : : "a"((unsigned char)v), "Nd"((unsigned short)port));
	return 0;
}

/* Called from _start with the initial stack pointer: argc, argv[]. */
__attribute__((used, noreturn)) void pinless_guest_main(long *sp)
{
	int rc = run((int)sp[0], (char **)(sp + 1));
	sys3(SYS_exit_group, rc, 0, 0);
	__builtin_unreachable();
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"  mov %rsp, %rdi\n"
	"  and $-16, %rsp\n"
	"  call pinless_guest_main\n"
	"  ud2\n");
