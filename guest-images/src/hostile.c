/*
 * hostile: what a malicious guest driver does to the PCI devices its VMM gives it, so that a
 * test can check the VMM survives it (tests/integration/hostile.sh, docs/vfio.md).
 *
 * One device is spared: the last edu device (highest BDF) or the one named by --spare. Every
 * other PCI function the guest sees (edu devices, the host bridge, a virtio-iommu) is a victim.
 * The spared one is only read, and its liveness scratch register written, to check that it
 * still answers; after the attacks the victims' saved config headers (and MSI capability) are
 * written back, so `edu-test` afterwards can show that both the spared and the attacked edu
 * work again.
 *
 * Attacks, one output line each ("hostile: ATTACK: ..."):
 *   bar-move   each victim memory BAR onto: every other device's BAR, the ECAM window, the
 *              IOAPIC, the LAPIC/MSI window, and a page of guest RAM (a locked page of ours);
 *              after each move the thing underneath must still answer as before (edu: its own
 *              liveness value; ECAM: the spared device's ids through the kernel; IOAPIC: its
 *              version register; LAPIC: the same dword as before; RAM: our pattern), then back
 *   bar-flood  one victim BAR onto the ECAM window and back, --flood times (a refused placement
 *              each time: the VMM's warning about it must be rate-limited)
 *   io-bar     an I/O BAR onto 0xcf8 (the config ports): only if some victim has an I/O BAR
 *   scribble   every config offset of every victim (and of an absent function, 00:1f.7), with
 *              random values, --rounds times: byte writes at every offset through sysfs
 *              `config` (0..0xff or 0..0xfff), byte and dword writes at every offset of the
 *              4 KiB ECAM page through /dev/mem, dword and byte writes through ports 0xcf8/0xcfc
 *   msi        the MSI capability of each victim edu: random address/data, every
 *              Multiple-Message-Enable value, then enabled with messages pointing nowhere
 *              (no such APIC ID, addresses outside the MSI window); the edu raises interrupts
 *              through them, none may arrive (counted on vector 0xf7); then a control message
 *              to CPU 0 must arrive (so the count above means something)
 *   msix       the MSI-X table of each victim that has one (edu has none; a virtio-iommu does):
 *              every dword random (entries masked), then every entry pointing nowhere,
 *              unmasked, MSI-X enabled, function mask off; the PBA written too
 *   dma        edu DMA, both directions, to bus addresses outside guest RAM (above the top of
 *              RAM, in the MMIO hole, near 2^32 and 2^40), waiting for each to complete. QEMU's
 *              edu clamps addresses to its DMA mask (28 bits by default), so an address whose
 *              clamped value lies in guest RAM is skipped; the line gives what the device used
 *   restore    the victims' headers and MSI capabilities written back through 0xcf8/0xcfc
 * Then "hostile: done, N problems". Exit status 0 when every check held, 1 otherwise.
 * Options: --spare BDF, --seed N, --rounds N (scribble rounds, default 2), --flood N (default
 * 1000), --dma-bytes N (default 256), --dma-gap-ms N (a pause after each DMA, default 0: the
 * host kernel rate-limits its IOMMU fault messages, a test that wants one per DMA spaces them).
 * Counts: each line ends with the number of config/BAR writes it made ("writes N"), the sum is
 * on the last line, so a test can bound what the VMM may log per write.
 */
#include "edu_test.h"

#include <sys/io.h>

#define MAX_DEVS 32
#define ECAM_FALLBACK 0xe0000000ull
#define IOAPIC_BASE 0xfec00000ull
#define LAPIC_BASE 0xfee00000ull

struct bar {
	uint64_t start, size;
	int io, mem64;
};

struct dev {
	char bdf[16];
	unsigned bus, slot, fn;
	uint16_t vendor, device;
	int edu, spared;
	unsigned cfg_size;
	struct bar bars[6];
	uint8_t saved[256];
	volatile uint8_t *bar0; /* edu: BAR0 mapped through resource0 */
	uint32_t live_value;    /* what we wrote to its liveness register */
};

static struct dev devs[MAX_DEVS];
static int ndevs;
static int problems;
static uint64_t total_writes;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t ecam_base = ECAM_FALLBACK;
static int have_ports;
static int mem_fd = -1;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static void problem(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("hostile: PROBLEM: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	problems++;
}

/* --- config access: sysfs, ports 0xcf8/0xcfc, ECAM through /dev/mem --- */

static int sysfs_cfg(const struct dev *d, int flags)
{
	char p[128];
	snprintf(p, sizeof p, "/sys/bus/pci/devices/%.64s/config", d->bdf);
	return open(p, flags);
}

static uint32_t sysfs_read32(const struct dev *d, unsigned off)
{
	uint32_t v = 0xffffffff;
	int fd = sysfs_cfg(d, O_RDONLY);
	if (fd >= 0) {
		if (pread(fd, &v, 4, off) != 4)
			v = 0xffffffff;
		close(fd);
	}
	return v;
}

static uint32_t port_addr(unsigned bus, unsigned slot, unsigned fn, unsigned off)
{
	return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (off & 0xfc);
}

static uint32_t port_read32(const struct dev *d, unsigned off)
{
	outl(port_addr(d->bus, d->slot, d->fn, off), 0xcf8);
	return inl(0xcfc);
}

static void port_write32(unsigned bus, unsigned slot, unsigned fn, unsigned off, uint32_t v)
{
	outl(port_addr(bus, slot, fn, off), 0xcf8);
	outl(v, 0xcfc);
	total_writes++;
}

static void port_write8(unsigned bus, unsigned slot, unsigned fn, unsigned off, uint8_t v)
{
	outl(port_addr(bus, slot, fn, off), 0xcf8);
	outb(v, 0xcfc + (off & 3));
	total_writes++;
}

/* Config writes that must work even while the ECAM window is in question: the ports when
 * we have them, sysfs otherwise. */
static void cfg_write32(const struct dev *d, unsigned off, uint32_t v)
{
	if (have_ports) {
		port_write32(d->bus, d->slot, d->fn, off, v);
		return;
	}
	int fd = sysfs_cfg(d, O_WRONLY);
	if (fd >= 0) {
		(void)!pwrite(fd, &v, 4, off);
		close(fd);
	}
	total_writes++;
}

static uint32_t cfg_read32(const struct dev *d, unsigned off)
{
	return have_ports ? port_read32(d, off) : sysfs_read32(d, off);
}

static volatile uint8_t *map_phys(uint64_t pa, size_t len)
{
	if (mem_fd < 0)
		return NULL;
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mem_fd, (off_t)pa);
	return m == MAP_FAILED ? NULL : m;
}

/* --- discovery --- */

static long read_hex(const char *bdf, const char *file)
{
	char p[128], buf[32] = {0};
	snprintf(p, sizeof p, "/sys/bus/pci/devices/%.64s/%s", bdf, file);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 16) : -1;
}

static void read_bars(struct dev *d)
{
	char p[128];
	snprintf(p, sizeof p, "/sys/bus/pci/devices/%.64s/resource", d->bdf);
	FILE *f = fopen(p, "r");
	if (!f)
		return;
	for (int i = 0; i < 6; i++) {
		unsigned long long s, e, fl;
		if (fscanf(f, "%llx %llx %llx", &s, &e, &fl) != 3)
			break;
		if (s == 0 && e == 0)
			continue;
		d->bars[i].start = s;
		d->bars[i].size = e - s + 1;
		d->bars[i].io = (fl & 0x100) != 0;
		d->bars[i].mem64 = (fl & 0x100000) != 0;
	}
	fclose(f);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static void find_ecam(void)
{
	FILE *f = fopen("/proc/iomem", "r");
	char line[256];
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		unsigned long long s, e;
		if (strstr(line, "MMCONFIG") && sscanf(line, " %llx-%llx", &s, &e) == 2) {
			ecam_base = s;
			break;
		}
	}
	fclose(f);
}

/* Highest end of "System RAM" (exclusive), and whether [a, a + len) touches any of it. */
static uint64_t ram_ranges[64][2];
static int n_ram;

static void find_ram(void)
{
	FILE *f = fopen("/proc/iomem", "r");
	char line[256];
	if (!f)
		return;
	while (fgets(line, sizeof line, f) && n_ram < 64) {
		unsigned long long s, e;
		if (line[0] != ' ' && strstr(line, "System RAM") && sscanf(line, "%llx-%llx", &s, &e) == 2) {
			ram_ranges[n_ram][0] = s;
			ram_ranges[n_ram][1] = e + 1;
			n_ram++;
		}
	}
	fclose(f);
}

static uint64_t ram_top_below_4g(void)
{
	uint64_t top = 0;
	for (int i = 0; i < n_ram; i++)
		if (ram_ranges[i][1] <= (1ull << 32) && ram_ranges[i][1] > top)
			top = ram_ranges[i][1];
	return top;
}

static int touches_ram(uint64_t a, uint64_t len)
{
	/* Guest RAM as the VMM maps it for DMA starts at 0 (holes included), so anything below
	 * the highest RAM end below 4 GiB counts too. */
	if (a < ram_top_below_4g())
		return 1;
	for (int i = 0; i < n_ram; i++)
		if (a < ram_ranges[i][1] && ram_ranges[i][0] < a + len)
			return 1;
	return 0;
}

static void discover(const char *spare)
{
	struct dirent **list;
	int n = scandir("/sys/bus/pci/devices", &list, NULL, by_name);
	int last_edu = -1;
	for (int i = 0; i < n && ndevs < MAX_DEVS; i++) {
		const char *name = list[i]->d_name;
		unsigned dom, bus, slot, fn;
		if (sscanf(name, "%x:%x:%x.%x", &dom, &bus, &slot, &fn) != 4)
			continue;
		struct dev *d = &devs[ndevs];
		memset(d, 0, sizeof *d);
		snprintf(d->bdf, sizeof d->bdf, "%.15s", name);
		d->bus = bus, d->slot = slot, d->fn = fn;
		d->vendor = (uint16_t)read_hex(name, "vendor");
		d->device = (uint16_t)read_hex(name, "device");
		d->edu = d->vendor == EDU_VENDOR && d->device == EDU_DEVICE;
		struct stat st;
		char p[128];
		snprintf(p, sizeof p, "/sys/bus/pci/devices/%.64s/config", name);
		d->cfg_size = stat(p, &st) == 0 ? (unsigned)st.st_size : 256;
		if (d->cfg_size > 4096)
			d->cfg_size = 4096;
		read_bars(d);
		int fd = open(p, O_RDONLY);
		if (fd >= 0) {
			(void)!pread(fd, d->saved, sizeof d->saved, 0);
			close(fd);
		}
		if (d->edu)
			last_edu = ndevs;
		if (spare && !strcmp(spare, name))
			d->spared = 1;
		ndevs++;
	}
	for (int i = 0; i < n; i++)
		free(list[i]);
	free(list);
	if (!spare && last_edu >= 0)
		devs[last_edu].spared = 1;
}

/* Memory decode (and bus master, for the edus' DMA) on, BAR0 of every edu mapped. */
static void map_edus(void)
{
	for (int i = 0; i < ndevs; i++) {
		struct dev *d = &devs[i];
		if (!d->edu)
			continue;
		int fd = sysfs_cfg(d, O_RDWR);
		uint16_t cmd = 0;
		if (fd >= 0) {
			(void)!pread(fd, &cmd, 2, 4);
			cmd |= 0x6;
			(void)!pwrite(fd, &cmd, 2, 4);
			close(fd);
		}
		char p[128];
		snprintf(p, sizeof p, "/sys/bus/pci/devices/%.64s/resource0", d->bdf);
		fd = open(p, O_RDWR | O_SYNC);
		if (fd < 0)
			continue;
		void *m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
		if (m != MAP_FAILED)
			d->bar0 = m;
		/* Each edu's liveness register holds a value of its own, so a BAR that shadowed
		 * another device's would give itself away. */
		d->live_value = 0x1000u * (unsigned)(i + 1) + 0x5a;
		if (d->bar0)
			*(volatile uint32_t *)(d->bar0 + EDU_LIVENESS) = d->live_value;
	}
}

static int edu_answers(const struct dev *d)
{
	if (!d->bar0)
		return 0;
	uint32_t id = *(volatile uint32_t *)(d->bar0 + EDU_ID);
	uint32_t live = *(volatile uint32_t *)(d->bar0 + EDU_LIVENESS);
	return id == EDU_ID_VALUE && live == ~d->live_value;
}

/* --- probes: things under a moved BAR that must still answer as before --- */

enum target_kind { T_DEV_BAR, T_ECAM, T_IOAPIC, T_LAPIC, T_RAM };

struct target {
	enum target_kind kind;
	uint64_t addr;
	const struct dev *owner; /* T_DEV_BAR */
	char what[64];
};

static const struct dev *spared_dev(void)
{
	for (int i = 0; i < ndevs; i++)
		if (devs[i].spared)
			return &devs[i];
	return NULL;
}

static volatile uint8_t *ram_page; /* a locked page of ours, with a pattern */
static uint64_t ram_page_pa;

static uint32_t ioapic_version(void)
{
	volatile uint8_t *m = map_phys(IOAPIC_BASE, PAGE);
	if (!m)
		return 0xffffffff;
	*(volatile uint32_t *)m = 1; /* IOREGSEL: version */
	uint32_t v = *(volatile uint32_t *)(m + 0x10);
	munmap((void *)m, PAGE);
	return v;
}

static uint32_t lapic_dword(void)
{
	volatile uint8_t *m = map_phys(LAPIC_BASE, PAGE);
	if (!m)
		return 0xffffffff;
	uint32_t v = *(volatile uint32_t *)m; /* an edu BAR over it would read its id here */
	munmap((void *)m, PAGE);
	return v;
}

static int ram_intact(void)
{
	for (unsigned i = 0; i < PAGE; i++)
		if (ram_page[i] != (uint8_t)(i * 13 + 7))
			return 0;
	return 1;
}

/* The probe value of a target (compared before and after a move). */
static uint64_t probe(const struct target *t)
{
	switch (t->kind) {
	case T_DEV_BAR:
		if (t->owner->edu)
			return edu_answers(t->owner);
		return sysfs_read32(t->owner, 0); /* config still reachable, ids unchanged */
	case T_ECAM: {
		const struct dev *s = spared_dev();
		return s ? sysfs_read32(s, 0) : sysfs_read32(&devs[0], 0);
	}
	case T_IOAPIC:
		return ioapic_version();
	case T_LAPIC:
		return lapic_dword();
	case T_RAM:
		return ram_intact();
	}
	return 0;
}

/* Writes BAR `b` of `d` (through the ports or sysfs) to `addr`. */
static void write_bar(const struct dev *d, int b, uint64_t addr)
{
	const struct bar *bar = &d->bars[b];
	uint32_t low_flags = d->saved[0x10 + 4 * b] & (bar->io ? 0x3 : 0xf);
	cfg_write32(d, 0x10 + 4 * b, (uint32_t)addr | low_flags);
	if (bar->mem64)
		cfg_write32(d, 0x14 + 4 * b, (uint32_t)(addr >> 32));
}

static void restore_bar(const struct dev *d, int b)
{
	cfg_write32(d, 0x10 + 4 * b, *(const uint32_t *)&d->saved[0x10 + 4 * b]);
	if (d->bars[b].mem64)
		cfg_write32(d, 0x14 + 4 * b, *(const uint32_t *)&d->saved[0x14 + 4 * b]);
}

static int n_targets;
static struct target targets[MAX_DEVS * 6 + 8];

static void add_target(enum target_kind k, uint64_t addr, const struct dev *owner, const char *what)
{
	struct target *t = &targets[n_targets++];
	t->kind = k, t->addr = addr, t->owner = owner;
	snprintf(t->what, sizeof t->what, "%s", what);
}

static void build_targets(void)
{
	char w[64];
	for (int i = 0; i < ndevs; i++)
		for (int b = 0; b < 6; b++)
			if (devs[i].bars[b].size && !devs[i].bars[b].io) {
				snprintf(w, sizeof w, "%.20s BAR%d", devs[i].bdf, b);
				add_target(T_DEV_BAR, devs[i].bars[b].start, &devs[i], w);
			}
	add_target(T_ECAM, ecam_base, NULL, "the ECAM window");
	add_target(T_IOAPIC, IOAPIC_BASE, NULL, "the IOAPIC");
	add_target(T_LAPIC, LAPIC_BASE, NULL, "the LAPIC/MSI window");
	if (ram_page)
		add_target(T_RAM, ram_page_pa, NULL, "guest RAM");
}

static void attack_bar_moves(void)
{
	for (int i = 0; i < ndevs; i++) {
		struct dev *d = &devs[i];
		if (d->spared)
			continue;
		for (int b = 0; b < 6; b++) {
			struct bar *bar = &d->bars[b];
			if (!bar->size)
				continue;
			if (bar->io) {
				/* An I/O BAR over the config ports themselves. */
				uint64_t w0 = total_writes;
				write_bar(d, b, 0xcf8 & ~(bar->size - 1));
				uint32_t ids = sysfs_read32(d, 0);
				restore_bar(d, b);
				int ok = ids == (uint32_t)(d->vendor | d->device << 16);
				printf("hostile: io-bar: %s BAR%d onto ports 0xcf8: config %s; writes %llu\n", d->bdf, b,
				       ok ? "still reachable" : "LOST", (unsigned long long)(total_writes - w0));
				if (!ok)
					problem("%s: config unreachable with its I/O BAR over 0xcf8", d->bdf);
				continue;
			}
			for (int t = 0; t < n_targets; t++) {
				const struct target *tg = &targets[t];
				if (tg->owner == d)
					continue;
				uint64_t at = tg->addr & ~(bar->size - 1);
				if (!bar->mem64 && at >> 32)
					continue;
				uint64_t before = probe(tg), w0 = total_writes;
				write_bar(d, b, at);
				/* Probes that select a register first (the IOAPIC) can race the kernel's own
				 * accesses: a value that differs is read again before it counts. */
				uint64_t during = probe(tg);
				for (int again = 0; again < 3 && during != before; again++)
					during = probe(tg);
				restore_bar(d, b);
				int self = !d->edu || edu_answers(d);
				printf("hostile: bar-move: %s BAR%d onto %s at 0x%llx: %s %s; itself after moving back: %s; writes %llu\n",
				       d->bdf, b, tg->what, (unsigned long long)at, tg->what,
				       during == before ? "unaffected" : "CHANGED", self ? "answers" : "SILENT",
				       (unsigned long long)(total_writes - w0));
				if (during != before)
					problem("%s BAR%d over %s changed what is there (0x%llx -> 0x%llx)", d->bdf, b,
						tg->what, (unsigned long long)before, (unsigned long long)during);
				if (!self)
					problem("%s does not answer after its BAR%d came back", d->bdf, b);
				fflush(stdout);
			}
		}
	}
	int io = 0;
	for (int i = 0; i < ndevs; i++)
		for (int b = 0; b < 6; b++)
			io |= !devs[i].spared && devs[i].bars[b].size && devs[i].bars[b].io;
	if (!io)
		printf("hostile: io-bar: no victim has an I/O BAR, nothing to put over ports 0xcf8 (skipped)\n");
}

static void attack_bar_flood(unsigned flood)
{
	for (int i = 0; i < ndevs; i++) {
		struct dev *d = &devs[i];
		if (d->spared || !d->bars[0].size || d->bars[0].io)
			continue;
		uint64_t at = ecam_base & ~(d->bars[0].size - 1), w0 = total_writes, t0 = now_us();
		for (unsigned n = 0; n < flood; n++) {
			write_bar(d, 0, at);
			restore_bar(d, 0);
		}
		const struct dev *s = spared_dev();
		uint32_t ids = s ? sysfs_read32(s, 0) : 0;
		int ok = !s || ids == (uint32_t)(s->vendor | s->device << 16);
		printf("hostile: bar-flood: %s BAR0 onto the ECAM window at 0x%llx and back %u times in %llu ms: "
		       "config space %s, %s %s; writes %llu\n",
		       d->bdf, (unsigned long long)at, flood, (unsigned long long)(now_us() - t0) / 1000,
		       ok ? "reachable" : "LOST", d->bdf, !d->edu || edu_answers(d) ? "answers" : "SILENT",
		       (unsigned long long)(total_writes - w0));
		if (!ok)
			problem("config space unreachable after the BAR flood");
		fflush(stdout);
		return; /* one device is enough for the flood */
	}
}

static void scribble_one(unsigned bus, unsigned slot, unsigned fn, const char *bdf, unsigned cfg_size,
			 int have_sysfs, unsigned rounds)
{
	uint64_t w0 = total_writes, sysfs_n = 0, ecam_n = 0, port_n = 0;
	volatile uint8_t *ecam = map_phys(ecam_base + ((uint64_t)bus << 20) + ((uint64_t)slot << 15) +
					  ((uint64_t)fn << 12), PAGE);
	for (unsigned r = 0; r < rounds; r++) {
		if (have_sysfs) {
			char p[128];
			snprintf(p, sizeof p, "/sys/bus/pci/devices/%.64s/config", bdf);
			int fd = open(p, O_WRONLY);
			for (unsigned off = 0; fd >= 0 && off < cfg_size; off++) {
				uint8_t v = (uint8_t)rnd();
				if (pwrite(fd, &v, 1, off) == 1)
					sysfs_n++;
				total_writes++;
			}
			if (fd >= 0)
				close(fd);
		}
		if (ecam) {
			for (unsigned off = 0; off < PAGE; off += 4, ecam_n++, total_writes++)
				*(volatile uint32_t *)(ecam + off) = (uint32_t)rnd();
			for (unsigned off = 0; off < PAGE; off++, ecam_n++, total_writes++)
				ecam[off] = (uint8_t)rnd();
		}
		if (have_ports) {
			for (unsigned off = 0; off < 256; off += 4, port_n++)
				port_write32(bus, slot, fn, off, (uint32_t)rnd());
			for (unsigned off = 0; off < 256; off++, port_n++)
				port_write8(bus, slot, fn, off, (uint8_t)rnd());
		}
	}
	if (ecam)
		munmap((void *)ecam, PAGE);
	printf("hostile: scribble: %s: %u round(s) of random values at every offset: %llu through sysfs (0..0x%x), "
	       "%llu through ECAM (0..0xfff%s), %llu through 0xcf8/0xcfc; writes %llu\n",
	       bdf, rounds, (unsigned long long)sysfs_n, cfg_size - 1, (unsigned long long)ecam_n,
	       ecam ? "" : ", /dev/mem unavailable", (unsigned long long)port_n,
	       (unsigned long long)(total_writes - w0));
	fflush(stdout);
}

static void attack_scribble(unsigned rounds)
{
	for (int i = 0; i < ndevs; i++) {
		struct dev *d = &devs[i];
		if (!d->spared)
			scribble_one(d->bus, d->slot, d->fn, d->bdf, d->cfg_size, 1, rounds);
	}
	/* A function nobody has. */
	scribble_one(0, 0x1f, 7, "0000:00:1f.7 (absent)", 256, 0, rounds);
}

/* --- MSI --- */

static unsigned find_cap(const struct dev *d, uint8_t id)
{
	uint16_t status = (uint16_t)(cfg_read32(d, 4) >> 16);
	if (!(status & 0x10))
		return 0;
	unsigned ptr = cfg_read32(d, 0x34) & 0xfc;
	for (int guard = 0; ptr >= 0x40 && guard < 48; guard++) {
		uint32_t hdr = cfg_read32(d, ptr);
		if ((hdr & 0xff) == id)
			return ptr;
		ptr = (hdr >> 8) & 0xfc;
	}
	return 0;
}

/* Addresses whose destination APIC ID does not exist (the guest has a few vCPUs at most),
 * some outside the MSI window altogether; fixed delivery, vector 0xf7 so the tracepoint would
 * count one that arrived anyway. */
static const uint32_t nowhere_addr[] = {0xfee7e000u, 0x0007d000u, 0xdeade000u, 0xfee7c00cu};

static void msi_program(const struct dev *d, unsigned cap, uint32_t ctl_hi, uint64_t addr, uint16_t data)
{
	uint32_t c0 = cfg_read32(d, cap);
	int is64 = (c0 >> 16) & 0x80;
	cfg_write32(d, cap + 4, (uint32_t)addr);
	if (is64) {
		cfg_write32(d, cap + 8, (uint32_t)(addr >> 32));
		cfg_write32(d, cap + 12, data);
	} else {
		cfg_write32(d, cap + 8, data);
	}
	cfg_write32(d, cap, (c0 & 0xffff) | ctl_hi << 16);
}

static void attack_msi(void)
{
	for (int i = 0; i < ndevs; i++) {
		struct dev *d = &devs[i];
		if (d->spared || !d->edu || !d->bar0)
			continue;
		unsigned cap = find_cap(d, 0x05);
		if (!cap) {
			printf("hostile: msi: %s has no MSI capability (skipped)\n", d->bdf);
			continue;
		}
		uint64_t w0 = total_writes;
		/* Garbage: random address/data with every Multiple Message Enable value, enabled,
		 * no interrupt raised (a random message may be any delivery mode, INIT included). */
		for (unsigned mme = 0; mme < 8; mme++) {
			msi_program(d, cap, (mme << 4) | 1, rnd(), (uint16_t)rnd());
			msi_program(d, cap, (mme << 4), rnd(), (uint16_t)rnd());
		}
		if (open_msi_counter()) {
			printf("hostile: msi: %s: cannot count MSIs: %s\n", d->bdf, reason);
			problems++;
			continue;
		}
		uint64_t c0 = msi_count();
		unsigned raised = 0;
		for (unsigned k = 0; k < sizeof nowhere_addr / sizeof *nowhere_addr; k++) {
			msi_program(d, cap, 0x0071, nowhere_addr[k], MSI_VECTOR); /* 8 vectors asked, enabled */
			for (int r = 0; r < 4; r++, raised++) {
				*(volatile uint32_t *)(d->bar0 + EDU_IRQ_RAISE) = 0x1;
				usleep(2000);
				*(volatile uint32_t *)(d->bar0 + EDU_IRQ_ACK) = 0x1;
			}
		}
		usleep(100000);
		uint64_t lost = msi_count() - c0;
		/* Control: the same path to CPU 0 delivers, so the 0 above is the routing's doing. */
		msi_program(d, cap, 0x0001, MSI_ADDRESS, MSI_VECTOR);
		uint64_t c1 = msi_count();
		*(volatile uint32_t *)(d->bar0 + EDU_IRQ_RAISE) = 0x1;
		uint64_t got = wait_msi(c1 + 1, 1000000) - c1;
		*(volatile uint32_t *)(d->bar0 + EDU_IRQ_ACK) = 0x1;
		msi_program(d, cap, 0x0000, 0, 0);
		close_msi_counter();
		printf("hostile: msi: %s: 16 random messages (every Multiple Message Enable), then %u interrupts "
		       "raised to %zu nowhere addresses: %llu arrived; control to CPU 0: %llu arrived; writes %llu\n",
		       d->bdf, raised, sizeof nowhere_addr / sizeof *nowhere_addr, (unsigned long long)lost,
		       (unsigned long long)got, (unsigned long long)(total_writes - w0));
		if (lost != 0)
			problem("%s: %llu interrupts to nowhere arrived", d->bdf, (unsigned long long)lost);
		if (got < 1)
			problem("%s: the control MSI to CPU 0 did not arrive", d->bdf);
		fflush(stdout);
	}
}

static void attack_msix(void)
{
	int any = 0;
	for (int i = 0; i < ndevs; i++) {
		struct dev *d = &devs[i];
		if (d->spared)
			continue;
		unsigned cap = find_cap(d, 0x11);
		if (!cap)
			continue;
		any = 1;
		uint32_t c0 = cfg_read32(d, cap), table = cfg_read32(d, cap + 4), pba = cfg_read32(d, cap + 8);
		unsigned n = ((c0 >> 16) & 0x7ff) + 1, tbar = table & 7, pbar = pba & 7;
		uint64_t w0 = total_writes;
		if (tbar > 5 || !d->bars[tbar].size || d->bars[tbar].io) {
			printf("hostile: msix: %s: table in BAR %u, which is not a memory BAR (skipped)\n", d->bdf, tbar);
			continue;
		}
		char p[128];
		snprintf(p, sizeof p, "/sys/bus/pci/devices/%.64s/resource%u", d->bdf, tbar);
		int fd = open(p, O_RDWR | O_SYNC);
		size_t len = d->bars[tbar].size;
		void *m = fd >= 0 ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
		if (fd >= 0)
			close(fd);
		if (m == MAP_FAILED) {
			printf("hostile: msix: %s: cannot map BAR %u: %s\n", d->bdf, tbar, strerror(errno));
			continue;
		}
		/* Memory decode on, MSI-X enabled with the function masked while we fill the table. */
		cfg_write32(d, 4, cfg_read32(d, 4) | 0x2);
		cfg_write32(d, cap, (c0 & 0xffff) | 0xc000u << 16);
		volatile uint32_t *t = (volatile uint32_t *)((uint8_t *)m + (table & ~7u));
		for (unsigned e = 0; e < n; e++) {
			for (unsigned k = 0; k < 3; k++, total_writes++)
				t[4 * e + k] = (uint32_t)rnd();
			t[4 * e + 3] = (uint32_t)rnd() | 1; /* masked garbage */
			total_writes++;
		}
		/* A few odd-sized and out-of-table writes too. */
		volatile uint8_t *tb = (volatile uint8_t *)t;
		for (unsigned k = 0; k < 64; k++, total_writes++)
			tb[rnd() % (16 * n)] = (uint8_t)rnd();
		for (unsigned e = 0; e < n; e++) {
			t[4 * e + 0] = nowhere_addr[e % (sizeof nowhere_addr / sizeof *nowhere_addr)];
			t[4 * e + 1] = 0;
			t[4 * e + 2] = MSI_VECTOR;
			t[4 * e + 3] = 0; /* unmasked */
			total_writes += 4;
		}
		/* Function mask off: every vector live and pointing nowhere. */
		cfg_write32(d, cap, (c0 & 0xffff) | 0x8000u << 16);
		if (pbar <= 5 && pbar == tbar) {
			volatile uint32_t *pb = (volatile uint32_t *)((uint8_t *)m + (pba & ~7u));
			for (unsigned k = 0; k < (n + 31) / 32; k++, total_writes++)
				pb[k] = (uint32_t)rnd();
		}
		usleep(100000);
		munmap(m, len);
		printf("hostile: msix: %s: %u table entries filled with garbage, then pointed nowhere, unmasked, MSI-X "
		       "enabled; PBA written; writes %llu\n",
		       d->bdf, n, (unsigned long long)(total_writes - w0));
		fflush(stdout);
	}
	if (!any)
		printf("hostile: msix: no victim has an MSI-X capability (edu has MSI only; a virtio-iommu has one)\n");
}

/* --- DMA outside guest RAM --- */

static int edu_dma(struct dev *d, uint64_t src, uint64_t dst, unsigned count, uint32_t cmd, uint64_t *us)
{
	volatile uint8_t *b = d->bar0;
	*(volatile uint64_t *)(b + EDU_DMA_SRC) = src;
	*(volatile uint64_t *)(b + EDU_DMA_DST) = dst;
	*(volatile uint64_t *)(b + EDU_DMA_COUNT) = count;
	uint64_t t0 = now_us();
	*(volatile uint32_t *)(b + EDU_DMA_CMD) = cmd | EDU_DMA_START;
	while (*(volatile uint32_t *)(b + EDU_DMA_CMD) & EDU_DMA_START) {
		if (now_us() - t0 > 5000000)
			return -1;
		usleep(200);
	}
	*us = now_us() - t0;
	return 0;
}

static void attack_dma(unsigned bytes, unsigned gap_ms)
{
	/* Rounded up to 1 MiB: the VMM maps guest RAM for DMA in whole regions, holes included. */
	uint64_t top = (ram_top_below_4g() + 0xfffff) & ~0xfffffull;
	const uint64_t cand[] = {
	    top,                             /* just above the top of RAM */
	    top + 0x800000,                  /* further above */
	    0xc8800000ull,                   /* the 32-bit PCI MMIO hole */
	    0xfed00000ull,                   /* below the MSI window, near the top of 4 GiB */
	    0xfffff000ull,                   /* the last page below 2^32 */
	    (1ull << 32) + 0x9000000ull,     /* just above 2^32 */
	    (1ull << 40) - 0x1000ull,        /* the last page below 2^40 */
	    (1ull << 40) + 0xa000000ull,     /* above 2^40 */
	};
	for (int i = 0; i < ndevs; i++) {
		struct dev *d = &devs[i];
		if (d->spared || !d->edu || !d->bar0)
			continue;
		for (size_t k = 0; k < sizeof cand / sizeof *cand; k++) {
			uint64_t a = cand[k], seen = a & EDU_DMA_MASK;
			if (touches_ram(a, bytes) || touches_ram(seen, bytes) ||
			    (seen >= LAPIC_BASE && seen < LAPIC_BASE + 0x100000) || (a >= LAPIC_BASE && a < LAPIC_BASE + 0x100000)) {
				printf("hostile: dma: %s: 0x%llx skipped (edu would use 0x%llx, inside guest RAM or the MSI window)\n",
				       d->bdf, (unsigned long long)a, (unsigned long long)seen);
				continue;
			}
			uint64_t us_to = 0, us_from = 0;
			int r1 = edu_dma(d, EDU_BUFFER, a, bytes, EDU_DMA_TO_RAM, &us_to);
			usleep(gap_ms * 1000);
			int r2 = edu_dma(d, a, EDU_BUFFER, bytes, 0, &us_from);
			usleep(gap_ms * 1000);
			printf("hostile: dma: %s: %u B device->0x%llx and 0x%llx->device (edu uses 0x%llx, outside guest RAM "
			       "[0, 0x%llx)): %s in %llu us, %s in %llu us\n",
			       d->bdf, bytes, (unsigned long long)a, (unsigned long long)a, (unsigned long long)seen,
			       (unsigned long long)top, r1 ? "NO COMPLETION" : "completed", (unsigned long long)us_to,
			       r2 ? "NO COMPLETION" : "completed", (unsigned long long)us_from);
			if (r1 || r2)
				problem("%s: DMA at 0x%llx did not complete within 5 s", d->bdf, (unsigned long long)a);
			fflush(stdout);
		}
	}
}

/* --- restore --- */

static void restore(void)
{
	for (int i = 0; i < ndevs; i++) {
		struct dev *d = &devs[i];
		if (d->spared)
			continue;
		uint64_t w0 = total_writes;
		/* Decode off first, then BARs, then the rest of the header, command last. */
		cfg_write32(d, 0x04, 0);
		for (unsigned off = 0x10; off < 0x28; off += 4)
			cfg_write32(d, off, *(uint32_t *)&d->saved[off]);
		cfg_write32(d, 0x30, *(uint32_t *)&d->saved[0x30]);
		cfg_write32(d, 0x0c, *(uint32_t *)&d->saved[0x0c]);
		cfg_write32(d, 0x3c, *(uint32_t *)&d->saved[0x3c]);
		/* Capabilities as they were (MSI/MSI-X disabled), walked in the saved copy. */
		unsigned ptr = d->saved[0x34] & 0xfc;
		for (int guard = 0; ptr >= 0x40 && ptr < 0xfc && guard < 48; guard++) {
			uint8_t id = d->saved[ptr];
			if (id == 0x05 || id == 0x11)
				for (unsigned off = ptr; off < ptr + 24 && off < 0x100; off += 4)
					cfg_write32(d, off, *(uint32_t *)&d->saved[off]);
			ptr = d->saved[ptr + 1] & 0xfc;
		}
		cfg_write32(d, 0x04, *(uint16_t *)&d->saved[0x04] | 0x6u);
		uint32_t ids = cfg_read32(d, 0);
		int ok = ids == (uint32_t)(d->vendor | d->device << 16) && (!d->edu || !d->bar0 ||
			 (*(volatile uint32_t *)(d->bar0 + EDU_ID) == EDU_ID_VALUE));
		printf("hostile: restore: %s: header and MSI/MSI-X capability written back: %s; writes %llu\n", d->bdf,
		       ok ? "answers" : "SILENT", (unsigned long long)(total_writes - w0));
		if (!ok && d->edu)
			problem("%s does not answer after the restore", d->bdf);
	}
}

int main(int argc, char **argv)
{
	const char *spare = NULL;
	unsigned rounds = 2, flood = 1000, dma_bytes = 256, gap_ms = 0;
	uint64_t seed = (uint64_t)now_us() ^ ((uint64_t)getpid() << 32);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--spare") && i + 1 < argc)
			spare = argv[++i];
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--flood") && i + 1 < argc)
			flood = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--dma-bytes") && i + 1 < argc)
			dma_bytes = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--dma-gap-ms") && i + 1 < argc)
			gap_ms = (unsigned)atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: hostile [--spare BDF] [--seed N] [--rounds N] [--flood N] [--dma-bytes N] [--dma-gap-ms N]\n");
			return 2;
		}
	}
	if (dma_bytes < 1 || dma_bytes > 4095)
		dma_bytes = 256;
	rng_state = seed ? seed : 1;
	have_ports = ioperm(0xcf8, 8, 1) == 0;
	mem_fd = open("/dev/mem", O_RDWR | O_SYNC);
	find_ecam();
	find_ram();
	discover(spare);
	const struct dev *s = spared_dev();
	printf("hostile: start: seed 0x%llx, %d PCI functions, spared %s, ECAM 0x%llx, guest RAM top 0x%llx, "
	       "ports 0xcf8 %s, /dev/mem %s\n",
	       (unsigned long long)seed, ndevs, s ? s->bdf : "none", (unsigned long long)ecam_base,
	       (unsigned long long)ram_top_below_4g(), have_ports ? "yes" : "no", mem_fd >= 0 ? "yes" : "no");
	fflush(stdout);
	if (!s)
		problem("no edu device to spare");

	/* A locked page of guest RAM with a pattern: a BAR placed over it must not hide it. */
	struct dma_page pg;
	if (alloc_low_pages(&pg, 1) == 0) {
		ram_page = pg.va;
		ram_page_pa = pg.pa;
		for (unsigned i = 0; i < PAGE; i++)
			ram_page[i] = (uint8_t)(i * 13 + 7);
	}
	map_edus();
	build_targets();

	attack_bar_moves();
	attack_bar_flood(flood);
	attack_scribble(rounds);
	restore(); /* the scribble left BARs and MSI anywhere: the next attacks need them back */
	attack_msi();
	attack_msix();
	attack_dma(dma_bytes, gap_ms);
	restore();

	if (s && s->edu && !edu_answers(s))
		problem("the spared device %s does not answer", s->bdf);
	if (ram_page && !ram_intact())
		problem("our guest RAM page changed");
	printf("hostile: done, %d problems, writes %llu\n", problems, (unsigned long long)total_writes);
	return problems ? 1 : 0;
}
