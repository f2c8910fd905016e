#include "vfio_guest.h"

int die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%s: FAIL: ", prog);
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

int find_edus(struct edu *out, int max)
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

int open_edu(struct edu *e)
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

void close_edu(struct edu *e)
{
	uint16_t command = 0;
	if (pread(e->dev, &command, 2, e->cfg + 4) == 2) {
		command &= (uint16_t)~0x4;
		if (pwrite(e->dev, &command, 2, e->cfg + 4) != 2)
			printf("%s: %s: cannot clear bus master\n", prog, e->bdf);
	}
	munmap((void *)e->bar, e->bar_size);
	close(e->dev);
	close(e->group);
	close(e->container);
}

int map(struct edu *e, void *va, uint64_t iova, uint64_t size)
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

int unmap(struct edu *e, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof u, .iova = iova, .size = size};
	if (ioctl(e->container, VFIO_IOMMU_UNMAP_DMA, &u) || u.size != size)
		return die("%s: VFIO_IOMMU_UNMAP_DMA %#llx: %s (unmapped %llu)", e->bdf, (unsigned long long)iova,
			   strerror(errno), (unsigned long long)u.size);
	return 0;
}

int edu_dma(volatile uint8_t *bar, uint64_t src, uint64_t dst, uint32_t count, uint32_t cmd)
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

