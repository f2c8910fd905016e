/*
 * vfio-edu: a user-space driver inside the guest, the way DPDK or SPDK drive a device behind
 * an IOMMU: the first edu device (PCI 1234:11e8) is bound to vfio-pci, its IOMMU group put in
 * a VFIO type1 container, and DMA goes through IOVAs this program maps:
 *
 *   1. bind to vfio-pci (driver_override + drivers_probe), open /dev/vfio/vfio and the group
 *   2. VFIO_TYPE1v2_IOMMU; VFIO_IOMMU_MAP_DMA of a 64 KiB buffer at IOVA 0x100000 (the guest
 *      IOMMU driver sends MAP requests to the virtio-iommu)
 *   3. BAR0 through the device fd, bus master on through the config region
 *   4. DMA: buffer (IOVA 0x100000) -> edu's own buffer -> buffer + 32 KiB (IOVA 0x108000)
 *   5. verify, VFIO_IOMMU_UNMAP_DMA (UNMAP requests), close everything
 *
 * The IOVAs are not the buffer's guest-physical addresses, so the data arrives only if the
 * host IOMMU translates the device's DMA through the mappings the guest made.
 * Output: "vfio-edu: BDF ok: ..." or "vfio-edu: FAIL: reason"; exit 0 on success.
 */
#include <linux/vfio.h>

#include "edu_test.h" /* the edu register map */

#define IOVA 0x100000ull
#define MAP_SIZE 0x10000ull
#define BYTES 4000u

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

static int find_edu(char *bdf, size_t len)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	int found = -1;
	if (!d)
		return -1;
	while (found < 0 && (e = readdir(d))) {
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
		if (n >= 6 && !strncmp(id, "0x11e8", 6)) {
			snprintf(bdf, len, "%s", e->d_name);
			found = 0;
		}
	}
	closedir(d);
	return found;
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

int main(void)
{
	char bdf[256], path[512], link[256];
	if (find_edu(bdf, sizeof bdf))
		return die("no edu device (1234:11e8) in /sys/bus/pci/devices");

	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver_override", bdf);
	if (write_file(path, "vfio-pci"))
		return die("%s: %s", path, strerror(errno));
	if (write_file("/sys/bus/pci/drivers_probe", bdf))
		return die("drivers_probe %s: %s", bdf, strerror(errno));
	snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/iommu_group", bdf);
	ssize_t n = readlink(path, link, sizeof link - 1);
	if (n < 0)
		return die("%s has no IOMMU group (%s): is the virtio-iommu there?", bdf, strerror(errno));
	link[n] = 0;
	const char *group_id = strrchr(link, '/') + 1;

	int container = open("/dev/vfio/vfio", O_RDWR);
	snprintf(path, sizeof path, "/dev/vfio/%s", group_id);
	int group = open(path, O_RDWR);
	if (container < 0 || group < 0)
		return die("open /dev/vfio/vfio or %s: %s", path, strerror(errno));
	struct vfio_group_status gs = {.argsz = sizeof gs};
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &gs) || !(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
		return die("group %s not viable", group_id);
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) ||
	    ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		return die("container setup: %s", strerror(errno));

	uint8_t *buf = mmap(NULL, MAP_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return die("mmap: %s", strerror(errno));
	memset(buf, 0, MAP_SIZE);
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof map,
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)buf,
		.iova = IOVA,
		.size = MAP_SIZE,
	};
	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map))
		return die("VFIO_IOMMU_MAP_DMA: %s", strerror(errno));

	int dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (dev < 0)
		return die("VFIO_GROUP_GET_DEVICE_FD: %s", strerror(errno));
	struct vfio_region_info bar0 = {.argsz = sizeof bar0, .index = VFIO_PCI_BAR0_REGION_INDEX};
	struct vfio_region_info cfg = {.argsz = sizeof cfg, .index = VFIO_PCI_CONFIG_REGION_INDEX};
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &bar0) || ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &cfg))
		return die("VFIO_DEVICE_GET_REGION_INFO: %s", strerror(errno));
	volatile uint8_t *bar = mmap(NULL, bar0.size, PROT_READ | PROT_WRITE, MAP_SHARED, dev, (off_t)bar0.offset);
	if (bar == MAP_FAILED)
		return die("mmap BAR0: %s", strerror(errno));
	if (*(volatile uint32_t *)bar != EDU_ID_VALUE)
		return die("BAR0 id %#x, want %#x", *(volatile uint32_t *)bar, EDU_ID_VALUE);
	uint16_t command = 0;
	if (pread(dev, &command, 2, (off_t)cfg.offset + 4) != 2)
		return die("config read: %s", strerror(errno));
	command |= 0x6; /* memory decode, bus master */
	if (pwrite(dev, &command, 2, (off_t)cfg.offset + 4) != 2)
		return die("config write: %s", strerror(errno));

	for (unsigned i = 0; i < BYTES; i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	if (edu_dma(bar, IOVA, EDU_BUFFER, BYTES, 0))
		return die("DMA buffer -> device did not finish");
	if (edu_dma(bar, EDU_BUFFER, IOVA + MAP_SIZE / 2, BYTES, EDU_DMA_TO_RAM))
		return die("DMA device -> buffer did not finish");
	for (unsigned i = 0; i < BYTES; i++) {
		if (buf[MAP_SIZE / 2 + i] != (uint8_t)(i * 7 + 3))
			return die("DMA data mismatch at byte %u: %#x, want %#x", i, buf[MAP_SIZE / 2 + i],
				   (uint8_t)(i * 7 + 3));
	}

	struct vfio_iommu_type1_dma_unmap unmap = {.argsz = sizeof unmap, .iova = IOVA, .size = MAP_SIZE};
	if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap) || unmap.size != MAP_SIZE)
		return die("VFIO_IOMMU_UNMAP_DMA: %s (unmapped %llu)", strerror(errno), (unsigned long long)unmap.size);
	command &= (uint16_t)~0x4;
	if (pwrite(dev, &command, 2, (off_t)cfg.offset + 4) != 2)
		return die("config write: %s", strerror(errno));
	munmap((void *)bar, bar0.size);
	close(dev);
	close(group);
	close(container);
	printf("vfio-edu: %s ok: group %s, %u bytes through IOVA %#llx -> edu -> IOVA %#llx, verified, unmapped\n",
	       bdf, group_id, BYTES, IOVA, IOVA + MAP_SIZE / 2);
	return 0;
}
