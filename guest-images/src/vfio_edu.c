/*
 * vfio-edu: a user-space driver inside the guest, the way DPDK or SPDK drive a device behind
 * an IOMMU: each edu device (PCI 1234:11e8, the first two) is bound to vfio-pci and put in a
 * VFIO type1 container of its own (one guest IOMMU domain each), and DMA goes through IOVAs
 * this program maps. Markers on stdout let a host-side sampler tell the phases apart:
 *
 *   1. bind, containers, "vfio-edu: ready to map", 1 s
 *   2. map a 16 MiB buffer X at IOVA 0x1000000 in A's domain (the guest IOMMU driver sends
 *      MAP requests to the virtio-iommu) and a 64 KiB buffer Y at the same IOVA in B's;
 *      "vfio-edu: mapped ...", 2 s
 *   3. DMA through A: X (IOVA 0x1000000) -> edu -> X + 8 MiB (IOVA 0x1800000), verified
 *   4. stray DMA: A writes to IOVA 0x3000000, which nobody mapped, and B writes to IOVA
 *      0x1800000, which is X in A's domain but nothing in B's: neither may land in X
 *   5. with two devices, X mapped again in B's domain at IOVA 0x2000000 (the same guest pages
 *      in a second domain); "vfio-edu: shared ...", 2 s; DMA through B into X, verified
 *   6. everything unmapped (UNMAP requests), "vfio-edu: unmapped", 2 s, closed
 *
 * The IOVAs are not the buffers' guest-physical addresses, so data arrives only if the host
 * IOMMU translates each device's DMA through the mappings its own domain holds.
 * Output: "vfio-edu: ok: ..." or "vfio-edu: FAIL: reason"; exit 0 on success.
 */
#include <linux/vfio.h>

#include "edu_test.h" /* the edu register map */

#define IOVA 0x1000000ull      /* 16 MiB: not the buffer's guest-physical address */
#define X_SIZE (16ull << 20)   /* large enough to see in the host's pin count */
#define Y_SIZE (64ull << 10)
#define SHARED_IOVA 0x2000000ull
#define UNMAPPED_IOVA 0x3000000ull
#define BYTES 4000u
#define HOLD_S 2 /* seconds per phase, for whoever samples the host's pins */

struct edu {
	char bdf[256];
	char group_id[32];
	int container, group, dev;
	volatile uint8_t *bar;
	size_t bar_size;
	off_t cfg;
};

static int die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("vfio-edu: FAIL: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	return 1;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Up to `max` edu devices, in directory order; returns how many. */
static int find_edus(struct edu *out, int max)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	int found = 0;
	if (!d)
		return 0;
	while (found < max && (e = readdir(d))) {
		char path[512], id[16] = {0};
		snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/vendor", e->d_name);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, id, sizeof id - 1);
		close(fd);
		if (n < 6 || strncmp(id, "0x1234", 6))
			continue;
		snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/device", e->d_name);
		fd = open(path, O_RDONLY);
		memset(id, 0, sizeof id);
		n = fd < 0 ? -1 : read(fd, id, sizeof id - 1);
		if (fd >= 0)
			close(fd);
		if (n >= 6 && !strncmp(id, "0x11e8", 6))
			snprintf(out[found++].bdf, sizeof out->bdf, "%s", e->d_name);
	}
	closedir(d);
	return found;
}

/* Binds `e` to vfio-pci, gives its group a container of its own, maps BAR0, bus master on. */
static int open_edu(struct edu *e)
{
	char path[1024], link[256];
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver_override", e->bdf);
	if (write_file(path, "vfio-pci"))
		return die("%s: %s", path, strerror(errno));
	if (write_file("/sys/bus/pci/drivers_probe", e->bdf))
		return die("drivers_probe %s: %s", e->bdf, strerror(errno));
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/iommu_group", e->bdf);
	ssize_t n = readlink(path, link, sizeof link - 1);
	if (n < 0)
		return die("%s has no IOMMU group (%s): is the virtio-iommu there?", e->bdf, strerror(errno));
	link[n] = 0;
	snprintf(e->group_id, sizeof e->group_id, "%s", strrchr(link, '/') + 1);
	e->container = open("/dev/vfio/vfio", O_RDWR);
	snprintf(path, sizeof path, "/dev/vfio/%s", e->group_id);
	e->group = open(path, O_RDWR);
	if (e->container < 0 || e->group < 0)
		return die("open /dev/vfio/vfio or %s: %s", path, strerror(errno));
	struct vfio_group_status gs = {.argsz = sizeof gs};
	if (ioctl(e->group, VFIO_GROUP_GET_STATUS, &gs) || !(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
		return die("group %s not viable", e->group_id);
	if (ioctl(e->group, VFIO_GROUP_SET_CONTAINER, &e->container) ||
	    ioctl(e->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		return die("%s: container setup: %s", e->bdf, strerror(errno));
	e->dev = ioctl(e->group, VFIO_GROUP_GET_DEVICE_FD, e->bdf);
	if (e->dev < 0)
		return die("VFIO_GROUP_GET_DEVICE_FD %s: %s", e->bdf, strerror(errno));
	struct vfio_region_info bar0 = {.argsz = sizeof bar0, .index = VFIO_PCI_BAR0_REGION_INDEX};
	struct vfio_region_info cfg = {.argsz = sizeof cfg, .index = VFIO_PCI_CONFIG_REGION_INDEX};
	if (ioctl(e->dev, VFIO_DEVICE_GET_REGION_INFO, &bar0) || ioctl(e->dev, VFIO_DEVICE_GET_REGION_INFO, &cfg))
		return die("VFIO_DEVICE_GET_REGION_INFO: %s", strerror(errno));
	e->bar_size = bar0.size;
	e->cfg = (off_t)cfg.offset;
	e->bar = mmap(NULL, bar0.size, PROT_READ | PROT_WRITE, MAP_SHARED, e->dev, (off_t)bar0.offset);
	if (e->bar == MAP_FAILED)
		return die("mmap BAR0 of %s: %s", e->bdf, strerror(errno));
	if (*(volatile uint32_t *)e->bar != EDU_ID_VALUE)
		return die("%s: BAR0 id %#x, want %#x", e->bdf, *(volatile uint32_t *)e->bar, EDU_ID_VALUE);
	uint16_t command = 0;
	if (pread(e->dev, &command, 2, e->cfg + 4) != 2)
		return die("config read: %s", strerror(errno));
	command |= 0x6; /* memory decode, bus master */
	if (pwrite(e->dev, &command, 2, e->cfg + 4) != 2)
		return die("config write: %s", strerror(errno));
	return 0;
}

static void close_edu(struct edu *e)
{
	uint16_t command = 0;
	if (pread(e->dev, &command, 2, e->cfg + 4) == 2) {
		command &= (uint16_t)~0x4;
		if (pwrite(e->dev, &command, 2, e->cfg + 4) != 2)
			printf("vfio-edu: %s: cannot clear bus master\n", e->bdf);
	}
	munmap((void *)e->bar, e->bar_size);
	close(e->dev);
	close(e->group);
	close(e->container);
}

static int map(struct edu *e, void *va, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof m,
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)va,
		.iova = iova,
		.size = size,
	};
	return ioctl(e->container, VFIO_IOMMU_MAP_DMA, &m) ? die("%s: VFIO_IOMMU_MAP_DMA %#llx: %s", e->bdf,
							   (unsigned long long)iova, strerror(errno))
							 : 0;
}

static int unmap(struct edu *e, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof u, .iova = iova, .size = size};
	if (ioctl(e->container, VFIO_IOMMU_UNMAP_DMA, &u) || u.size != size)
		return die("%s: VFIO_IOMMU_UNMAP_DMA %#llx: %s (unmapped %llu)", e->bdf, (unsigned long long)iova,
			   strerror(errno), (unsigned long long)u.size);
	return 0;
}

static void phase(const char *what)
{
	printf("vfio-edu: %s\n", what);
	fflush(stdout);
	sleep(HOLD_S);
}

/* Runs one edu DMA and waits (1 s at most) for it to finish. */
static int edu_dma(volatile uint8_t *bar, uint64_t src, uint64_t dst, uint32_t count, uint32_t cmd)
{
	*(volatile uint64_t *)(bar + EDU_DMA_SRC) = src;
	*(volatile uint64_t *)(bar + EDU_DMA_DST) = dst;
	*(volatile uint64_t *)(bar + EDU_DMA_COUNT) = count;
	*(volatile uint64_t *)(bar + EDU_DMA_CMD) = cmd | EDU_DMA_START;
	for (int i = 0; i < 1000; i++) {
		if (!(*(volatile uint64_t *)(bar + EDU_DMA_CMD) & EDU_DMA_START))
			return 0;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	return -1;
}

/* Runs one edu DMA and checks `n` bytes at `at` against the pattern (or untouched 0x5a). */
static int dma_check(struct edu *e, uint64_t src, uint64_t dst, uint32_t cmd, const uint8_t *at, int want_pattern)
{
	if (edu_dma(e->bar, src, dst, BYTES, cmd))
		return die("%s: DMA %#llx -> %#llx did not finish", e->bdf, (unsigned long long)src,
			   (unsigned long long)dst);
	for (unsigned i = 0; i < BYTES; i++) {
		uint8_t want = want_pattern ? (uint8_t)(i * 7 + 3) : 0x5a;
		if (at[i] != want)
			return die("%s: after DMA %#llx -> %#llx, byte %u is %#x, want %#x%s", e->bdf,
				   (unsigned long long)src, (unsigned long long)dst, i, at[i], want,
				   want_pattern ? "" : " (a stray DMA landed)");
	}
	return 0;
}

int main(void)
{
	struct edu edus[2];
	memset(edus, 0, sizeof edus);
	int n = find_edus(edus, 2);
	if (n == 0)
		return die("no edu device (1234:11e8) in /sys/bus/pci/devices");
	for (int i = 0; i < n; i++)
		if (open_edu(&edus[i]))
			return 1;
	struct edu *a = &edus[0], *b = n > 1 ? &edus[1] : NULL;
	uint8_t *x = mmap(NULL, X_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *y = mmap(NULL, Y_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (x == MAP_FAILED || y == MAP_FAILED)
		return die("mmap: %s", strerror(errno));
	memset(x, 0, X_SIZE);
	memset(y, 0, Y_SIZE);
	uint8_t *half = x + X_SIZE / 2;

	phase("ready to map");
	if (map(a, x, IOVA, X_SIZE) || (b && map(b, y, IOVA, Y_SIZE)))
		return 1;
	phase(b ? "mapped 16 MiB in A's domain, 64 KiB in B's" : "mapped 16 MiB in A's domain");

	for (unsigned i = 0; i < BYTES; i++)
		x[i] = (uint8_t)(i * 7 + 3);
	if (edu_dma(a->bar, IOVA, EDU_BUFFER, BYTES, 0))
		return die("%s: DMA buffer -> device did not finish", a->bdf);
	if (dma_check(a, EDU_BUFFER, IOVA + X_SIZE / 2, EDU_DMA_TO_RAM, half, 1))
		return 1;
	memset(half, 0x5a, BYTES);
	if (dma_check(a, EDU_BUFFER, UNMAPPED_IOVA, EDU_DMA_TO_RAM, half, 0))
		return 1;
	if (b) {
		/* B's device buffer gets Y's zeros, so a landing in X (0x5a there) would show. */
		if (edu_dma(b->bar, IOVA, EDU_BUFFER, BYTES, 0))
			return die("%s: DMA Y -> device did not finish", b->bdf);
		if (dma_check(b, EDU_BUFFER, IOVA + X_SIZE / 2, EDU_DMA_TO_RAM, half, 0))
			return 1;
		if (map(b, x, SHARED_IOVA, X_SIZE))
			return 1;
		phase("shared: X mapped in B's domain too");
		/* B's device buffer now holds Y's bytes (zero): load A's pattern through the shared map. */
		if (edu_dma(b->bar, SHARED_IOVA, EDU_BUFFER, BYTES, 0))
			return die("%s: DMA X -> device did not finish", b->bdf);
		if (dma_check(b, EDU_BUFFER, SHARED_IOVA + X_SIZE / 2, EDU_DMA_TO_RAM, half, 1))
			return 1;
		if (unmap(b, SHARED_IOVA, X_SIZE) || unmap(b, IOVA, Y_SIZE))
			return 1;
	}
	if (unmap(a, IOVA, X_SIZE))
		return 1;
	phase("unmapped");
	for (int i = 0; i < n; i++)
		close_edu(&edus[i]);
	printf("vfio-edu: ok: %d device(s) in %d domain(s); %u bytes through IOVA %#llx -> edu -> IOVA %#llx "
	       "verified; stray DMA to IOVA %#llx (unmapped)%s did not land%s; unmapped\n",
	       n, n, BYTES, IOVA, IOVA + X_SIZE / 2, UNMAPPED_IOVA,
	       b ? " and from B to A's IOVA" : "", b ? "; X shared into B's domain and DMAed through it" : "");
	return 0;
}
