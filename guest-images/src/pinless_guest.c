/*
 * pinless-guest: the tiny helper the test image's /init uses to talk to pinless
 * through the debug ports of docs/guest-abi.md.
 *
 *   pinless-guest marker N   write N (1..127) to port 0xf4 (1 = boot complete)
 *   pinless-guest status N   write N (0..255) to port 0xf5 (exit status)
 *   pinless-guest power-button
 *                            wait for the ACPI power button (docs/guest-abi.md), then
 *                            report status 0 and power off as /init's own ending does
 *
 * Built without libc (-nostdlib, raw syscalls): a few KiB, so /init can run it
 * as its very first action without the startup cost of a static glibc binary.
 * Exit status: 0 on success, 1 on bad arguments, 2 if ioperm() (or the power
 * off) failed, 3 if no power button appeared or reading it failed.
 */
#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_ioctl 16
#define SYS_nanosleep 35
#define SYS_sync 162
#define SYS_reboot 169
#define SYS_ioperm 173
#define SYS_exit_group 231

#define O_RDONLY_CLOEXEC 02000000
#define EINTR 4
/* EVIOCGNAME(len): _IOC(_IOC_READ, 'E', 0x06, len), from <linux/input.h>. */
#define EVIOCGNAME(len) ((2ul << 30) | ((unsigned long)(len) << 16) | ('E' << 8) | 0x06)
#define EV_KEY 1
#define KEY_POWER 116
/* reboot(2) magic numbers and LINUX_REBOOT_CMD_POWER_OFF (what busybox poweroff -f uses). */
#define REBOOT_MAGIC1 0xfee1deadl
#define REBOOT_MAGIC2 672274793l
#define REBOOT_POWER_OFF 0x4321fedcl

/* struct input_event on x86_64: a 64-bit struct timeval, then type, code, value. */
struct input_event64 {
	long sec, usec;
	unsigned short type, code;
	int value;
};

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

/* One byte to a debug port (docs/guest-abi.md); 0, or 2 if ioperm() failed. */
static int out_port(int port, int v)
{
	if (sys3(SYS_ioperm, port, 1, 1) != 0) {
		say("pinless-guest: ioperm failed (not root?)\n");
		return 2;
	}
	__asm__ volatile("outb %b0, %w1" : : "a"((unsigned char)v), "Nd"((unsigned short)port));
	return 0;
}

static void sleep_ms(long ms)
{
	long ts[2] = {ms / 1000, (ms % 1000) * 1000000};
	sys3(SYS_nanosleep, (long)ts, 0, 0);
}

/* The evdev node named "Power Button" (the ACPI button driver's input device), or -1. */
static long open_power_button(void)
{
	char path[20] = "/dev/input/event";
	char name[32];
	for (int i = 0; i < 32; i++) {
		int n = 16; /* strlen("/dev/input/event") */
		if (i >= 10)
			path[n++] = (char)('0' + i / 10);
		path[n++] = (char)('0' + i % 10);
		path[n] = 0;
		long fd = sys3(SYS_open, (long)path, O_RDONLY_CLOEXEC, 0);
		if (fd < 0)
			continue;
		long len = sys3(SYS_ioctl, fd, (long)EVIOCGNAME(sizeof(name) - 1), (long)name);
		if (len > 0) {
			name[len] = 0;
			if (streq(name, "Power Button"))
				return fd;
		}
		sys3(SYS_close, fd, 0, 0);
	}
	return -1;
}

/* Blocks until `fd` reports KEY_POWER pressed: 0, or 3 if reading failed. */
static int wait_for_press(long fd)
{
	struct input_event64 ev[8];
	for (;;) {
		long n = sys3(SYS_read, fd, (long)ev, sizeof(ev));
		if (n == -EINTR)
			continue;
		if (n <= 0)
			return 3;
		for (unsigned long i = 0; i < (unsigned long)n / sizeof(ev[0]); i++) {
			if (ev[i].type == EV_KEY && ev[i].code == KEY_POWER && ev[i].value == 1)
				return 0;
		}
	}
}

/*
 * Waits for a press of the ACPI power button, then powers off. Silent until
 * the press, so the tests' console output is unchanged. /init may start it
 * before devtmpfs has the /dev/input nodes, hence the retries (5 s).
 */
static int power_button(void)
{
	long fd = -1;
	for (int tries = 0; fd < 0 && tries < 50; tries++) {
		fd = open_power_button();
		if (fd < 0)
			sleep_ms(100);
	}
	if (fd < 0 || wait_for_press(fd) != 0)
		return 3;
	/* As /init ends a test: the status, then poweroff -f (sync, reboot(POWER_OFF)). */
	say("pinless-guest: power button: powering off\n");
	if (out_port(0xf5, 0) != 0)
		return 2;
	sys3(SYS_sync, 0, 0, 0);
	sys3(SYS_reboot, REBOOT_MAGIC1, REBOOT_MAGIC2, REBOOT_POWER_OFF);
	say("pinless-guest: power off failed\n");
	return 2;
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
	if (argc == 2 && streq(argv[1], "power-button"))
		return power_button();
	if (argc != 3) {
		say("usage: pinless-guest marker N | status N | power-button\n");
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
		say("usage: pinless-guest marker N | status N | power-button\n");
		return 1;
	}
	return out_port(port, v);
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
