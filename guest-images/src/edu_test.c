/*
 * edu-test: drives every QEMU edu device (PCI 1234:11e8) the guest can see, from
 * userspace, without a kernel driver:
 *
 *   1. enable memory decode + bus master in the command register (sysfs `config`)
 *   2. mmap BAR0 (sysfs `resource0`); check the id (0x00 = 0x010000ed) and the
 *      liveness register (0x04 reads back inverted)
 *   3. program the MSI capability (sysfs `config`) to send vector 0xf7 to CPU 0
 *   4. DMA a pattern RAM -> device buffer (0x40000) -> second RAM page; compare
 *   5. raise interrupts through 0x60 and count the MSIs that arrived
 *
 * DMA buffers are mlock()ed pages whose physical addresses come from
 * /proc/self/pagemap; they must lie below 256 MiB (edu's default 28-bit DMA mask:
 * edu silently clamps higher addresses, which would hit some other page).
 *
 * MSI counting: vector 0xf7 is Linux's X86_PLATFORM_IPI_VECTOR. Its handler only
 * acks the APIC and bumps a counter (no platform callback is installed on a
 * KVM/QEMU guest), and it has a tracepoint, irq_vectors:x86_platform_ipi_entry,
 * which this program counts with perf_event_open() on every CPU. So no UIO or
 * VFIO-noiommu driver is needed (the testbed kernel has neither). If tracefs
 * is not mounted, edu-test mounts it.
 *
 * Output: one line per device, "edu-test: BDF ok: ..." or "edu-test: BDF FAIL: reason",
 * then "edu-test: N of M devices ok". Devices are tested one after the other, so each
 * device's MSI count is its own (the previous device's MSI is disabled by then).
 * Exit status: 0 when every device passed, 1 otherwise (also when none was found).
 * Options: --msi N (interrupts to raise, default 8), --no-msi, --bytes N (<= 4095).
 */
#include "edu_test.h"

static long read_hex_file(const char *path)
{
	char buf[32] = {0};
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 16) : -1;
}

/* --- config space through sysfs --- */

static int cfg_read(int fd, unsigned off, void *v, size_t n)
{
	return pread(fd, v, n, off) == (ssize_t)n ? 0 : -1;
}

static int cfg_write(int fd, unsigned off, const void *v, size_t n)
{
	return pwrite(fd, v, n, off) == (ssize_t)n ? 0 : -1;
}

/* Offset of capability `id`, 0 if absent. */
static unsigned find_cap(int cfg, uint8_t id)
{
	uint16_t status = 0;
	uint8_t ptr = 0;
	if (cfg_read(cfg, 0x06, &status, 2) || !(status & 0x10))
		return 0;
	if (cfg_read(cfg, 0x34, &ptr, 1))
		return 0;
	for (int guard = 0; ptr >= 0x40 && guard < 48; guard++) {
		uint8_t hdr[2];
		if (cfg_read(cfg, ptr & ~3u, hdr, 2))
			return 0;
		if (hdr[0] == id)
			return ptr & ~3u;
		ptr = hdr[1];
	}
	return 0;
}

/* --- BAR0 registers --- */

static volatile uint8_t *bar;

static uint32_t r32(unsigned off) { return *(volatile uint32_t *)(bar + off); }
static void w32(unsigned off, uint32_t v) { *(volatile uint32_t *)(bar + off) = v; }
static void w64(unsigned off, uint64_t v) { *(volatile uint64_t *)(bar + off) = v; }


/* --- one device --- */

struct options {
	unsigned bytes;
	unsigned msis;
	int no_msi;
};

static int run_dma(uint64_t src, uint64_t dst, unsigned count, uint32_t cmd, uint64_t *us)
{
	w64(EDU_DMA_SRC, src);
	w64(EDU_DMA_DST, dst);
	w64(EDU_DMA_COUNT, count);
	uint64_t t0 = now_us();
	w32(EDU_DMA_CMD, cmd | EDU_DMA_START);
	while (r32(EDU_DMA_CMD) & EDU_DMA_START) {
		if (now_us() - t0 > 5000000)
			return fail("DMA %s did not complete within 5 s",
				    cmd & EDU_DMA_TO_RAM ? "device->RAM" : "RAM->device");
		usleep(200);
	}
	*us = now_us() - t0;
	return 0;
}

static int test_device(const char *bdf, const struct options *o, char *summary, size_t summary_len)
{
	char path[256];
	int rc = -1;
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%.64s/config", bdf);
	int cfg = open(path, O_RDWR);
	if (cfg < 0)
		return fail("open %s: %s", path, strerror(errno));

	uint16_t cmd_orig = 0, cmd;
	if (cfg_read(cfg, 0x04, &cmd_orig, 2)) {
		fail("read command register: %s", strerror(errno));
		goto out_cfg;
	}
	cmd = cmd_orig | 0x2 /* memory */ | 0x4 /* bus master */;
	if (cfg_write(cfg, 0x04, &cmd, 2)) {
		fail("write command register: %s", strerror(errno));
		goto out_cfg;
	}

	snprintf(path, sizeof path, "/sys/bus/pci/devices/%.64s/resource0", bdf);
	int res = open(path, O_RDWR | O_SYNC);
	if (res < 0) {
		fail("open %s: %s", path, strerror(errno));
		goto out_cmd;
	}
	void *m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, res, 0);
	close(res);
	if (m == MAP_FAILED) {
		fail("mmap BAR0: %s", strerror(errno));
		goto out_cmd;
	}
	bar = m;

	uint32_t id = r32(EDU_ID);
	if (id != EDU_ID_VALUE) {
		fail("id register 0x%08x, want 0x%08x", id, EDU_ID_VALUE);
		goto out_bar;
	}
	w32(EDU_LIVENESS, 0x5a5aa5a5u);
	uint32_t live = r32(EDU_LIVENESS);
	if (live != ~0x5a5aa5a5u) {
		fail("liveness: wrote 0x5a5aa5a5, read 0x%08x, want 0x%08x", live, ~0x5a5aa5a5u);
		goto out_bar;
	}

	/* MSI: vector 0xf7 to APIC ID 0 (see the top comment). */
	unsigned msi = 0;
	uint16_t msi_ctl = 0;
	if (!o->no_msi) {
		msi = find_cap(cfg, 0x05);
		if (!msi) {
			fail("no MSI capability in config space");
			goto out_bar;
		}
		if (cfg_read(cfg, msi + 2, &msi_ctl, 2))
			goto cfg_fail;
		uint32_t addr = MSI_ADDRESS, zero = 0;
		uint16_t data = MSI_VECTOR;
		unsigned data_off = (msi_ctl & 0x80) ? 0x0c : 0x08;
		uint16_t ctl = (uint16_t)((msi_ctl & ~0x70u) | 0x1); /* 1 vector, enable */
		if (cfg_write(cfg, msi + 4, &addr, 4) ||
		    ((msi_ctl & 0x80) && cfg_write(cfg, msi + 8, &zero, 4)) ||
		    cfg_write(cfg, msi + data_off, &data, 2) || cfg_write(cfg, msi + 2, &ctl, 2))
			goto cfg_fail;
		if (open_msi_counter())
			goto out_msi;
	}

	struct dma_page pg[2];
	if (alloc_low_pages(pg, 2))
		goto out_msi;
	for (unsigned i = 0; i < PAGE; i++) {
		pg[0].va[i] = (uint8_t)(i * 7 + 0x3d + (i >> 8));
		pg[1].va[i] = 0xee;
	}

	uint64_t msi0 = o->no_msi ? 0 : msi_count();
	uint64_t us_to_dev, us_to_ram;
	uint32_t dma_irq = o->no_msi ? 0 : EDU_DMA_IRQ;
	if (run_dma(pg[0].pa, EDU_BUFFER, o->bytes, dma_irq, &us_to_dev))
		goto out_msi;
	if (dma_irq)
		w32(EDU_IRQ_ACK, EDU_DMA_IRQ_STATUS);
	if (run_dma(EDU_BUFFER, pg[1].pa, o->bytes, dma_irq | EDU_DMA_TO_RAM, &us_to_ram))
		goto out_msi;
	if (dma_irq)
		w32(EDU_IRQ_ACK, EDU_DMA_IRQ_STATUS);
	for (unsigned i = 0; i < PAGE; i++) {
		uint8_t want = i < o->bytes ? pg[0].va[i] : 0xee;
		if (pg[1].va[i] != want) {
			fail("DMA data mismatch at byte %u: 0x%02x, want 0x%02x (src pa 0x%llx, dst pa 0x%llx)",
			     i, pg[1].va[i], want, (unsigned long long)pg[0].pa,
			     (unsigned long long)pg[1].pa);
			goto out_msi;
		}
	}

	char msi_text[128] = "msi not tested";
	if (!o->no_msi) {
		uint64_t c = wait_msi(msi0 + 2, 2000000);
		if (c - msi0 < 2) {
			fail("%llu MSIs for 2 DMA completions (vector 0x%x)",
			     (unsigned long long)(c - msi0), MSI_VECTOR);
			goto out_msi;
		}
		uint64_t base = c, t0 = now_us(), worst = 0;
		for (unsigned i = 0; i < o->msis; i++) {
			uint64_t t = now_us();
			w32(EDU_IRQ_RAISE, 0x1);
			uint64_t got = wait_msi(base + i + 1, 1000000);
			w32(EDU_IRQ_ACK, 0x1);
			if (got < base + i + 1) {
				fail("MSI %u of %u never arrived (vector 0x%x; %llu counted)", i + 1, o->msis,
				     MSI_VECTOR, (unsigned long long)(got - base));
				goto out_msi;
			}
			if (now_us() - t > worst)
				worst = now_us() - t;
		}
		uint64_t total = msi_count() - msi0;
		snprintf(msi_text, sizeof msi_text,
			 "msi %llu (2 dma + %u raised, want >= %u), %llu us for %u, worst %llu us",
			 (unsigned long long)total, o->msis, o->msis + 2,
			 (unsigned long long)(now_us() - t0), o->msis, (unsigned long long)worst);
	}
	snprintf(summary, summary_len,
		 "id 0x%08x, dma %u B ram->dev %llu us, dev->ram %llu us, verified (pa 0x%llx/0x%llx); %s",
		 id, o->bytes, (unsigned long long)us_to_dev, (unsigned long long)us_to_ram,
		 (unsigned long long)pg[0].pa, (unsigned long long)pg[1].pa, msi_text);
	rc = 0;
	goto out_msi;

cfg_fail:
	fail("write MSI capability at 0x%x: %s", msi, strerror(errno));
out_msi:
	if (msi) {
		uint16_t off = msi_ctl & ~1u;
		cfg_write(cfg, msi + 2, &off, 2);
	}
	close_msi_counter();
out_bar:
	munmap((void *)bar, PAGE);
	bar = NULL;
out_cmd:
	cfg_write(cfg, 0x04, &cmd_orig, 2);
out_cfg:
	close(cfg);
	return rc;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
	struct options o = {.bytes = 4095, .msis = 8, .no_msi = 0};
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--no-msi")) {
			o.no_msi = 1;
		} else if (!strcmp(argv[i], "--msi") && i + 1 < argc) {
			o.msis = (unsigned)atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--bytes") && i + 1 < argc) {
			o.bytes = (unsigned)atoi(argv[++i]);
			/* QEMU 7.2's edu aborts QEMU for a DMA ending exactly at its buffer end. */
			if (o.bytes < 1 || o.bytes > 4095) {
				fprintf(stderr, "edu-test: --bytes must be 1..4095\n");
				return 2;
			}
		} else {
			fprintf(stderr, "usage: edu-test [--bytes N] [--msi N | --no-msi]\n");
			return 2;
		}
	}
	struct dirent **list;
	int n = scandir("/sys/bus/pci/devices", &list, NULL, by_name);
	if (n < 0) {
		printf("edu-test: FAIL: cannot list /sys/bus/pci/devices: %s\n", strerror(errno));
		return 1;
	}
	int found = 0, failed = 0;
	for (int i = 0; i < n; i++) {
		const char *bdf = list[i]->d_name;
		char p[256];
		snprintf(p, sizeof p, "/sys/bus/pci/devices/%.64s/vendor", bdf);
		long vendor = read_hex_file(p);
		snprintf(p, sizeof p, "/sys/bus/pci/devices/%.64s/device", bdf);
		long device = read_hex_file(p);
		if (vendor != EDU_VENDOR || device != EDU_DEVICE)
			continue;
		found++;
		char summary[512];
		reason[0] = 0;
		if (test_device(bdf, &o, summary, sizeof summary) == 0) {
			printf("edu-test: %s ok: %s\n", bdf, summary);
		} else {
			printf("edu-test: %s FAIL: %s\n", bdf, reason);
			failed++;
		}
		fflush(stdout);
	}
	if (!found) {
		printf("edu-test: FAIL: no edu device (1234:11e8) in /sys/bus/pci/devices\n");
		return 1;
	}
	printf("edu-test: %d of %d devices ok\n", found - failed, found);
	return failed ? 1 : 0;
}
