/*
 * vfio-map-bench: what a guest IOMMU costs a guest that maps per DMA. The first edu device is
 * bound to vfio-pci in a type1 container (one guest domain), then, through the guest's
 * VFIO_IOMMU_MAP_DMA / UNMAP_DMA (each one MAP or UNMAP request to the virtio-iommu per
 * contiguous guest-physical piece, synchronous: strict unmap):
 *   - 4 KiB map+unmap pairs for SECONDS seconds,
 *   - 2 MiB map+unmap pairs for SECONDS seconds (a 2 MiB-aligned buffer),
 *   - one map and one unmap of a 64 MiB buffer.
 * The buffers are touched first, so guest page faults are not measured. No DMA is done.
 * Output, one line: "vfio-map-bench: 4k N/s (n in T s); 2m N/s (n in T s); 64m map M ms,
 * unmap U ms". Usage: vfio-map-bench [SECONDS] (default 3). Exit 0 on success.
 */
#include <time.h>

#include "vfio_guest.h"

#define IOVA 0x1000000ull
#define BIG (64ull << 20)
#define MID (2ull << 20)

const char *prog = "vfio-map-bench";

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* map+unmap pairs of `size` bytes at `va` for `seconds`: pairs per second, or -1. */
static double pairs_per_s(struct edu *e, void *va, uint64_t size, double seconds, unsigned long *pairs, double *took)
{
	double t0 = now_s(), t = t0;
	unsigned long n = 0;
	while (t - t0 < seconds) {
		if (map(e, va, IOVA, size) || unmap(e, IOVA, size))
			return -1;
		++n;
		if ((n & 15) == 0)
			t = now_s();
	}
	t = now_s();
	*pairs = n;
	*took = t - t0;
	return (double)n / (t - t0);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3.0;
	if (seconds <= 0 || seconds > 600)
		return die("SECONDS must be in (0, 600]");
	struct edu e;
	memset(&e, 0, sizeof e);
	if (find_edus(&e, 1) != 1)
		return die("no edu device (1234:11e8) in /sys/bus/pci/devices");
	if (open_edu(&e))
		return 1;
	/* One 64 MiB buffer, 2 MiB-aligned inside a larger reservation. */
	uint8_t *raw = mmap(NULL, BIG + MID, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return die("mmap: %s", strerror(errno));
	uint8_t *buf = (uint8_t *)(((uintptr_t)raw + MID - 1) & ~(uintptr_t)(MID - 1));
	memset(buf, 1, BIG);

	unsigned long n4, n2;
	double t4, t2;
	double r4 = pairs_per_s(&e, buf, PAGE, seconds, &n4, &t4);
	if (r4 < 0)
		return 1;
	double r2 = pairs_per_s(&e, buf, MID, seconds, &n2, &t2);
	if (r2 < 0)
		return 1;
	double t0 = now_s();
	if (map(&e, buf, IOVA, BIG))
		return 1;
	double t1 = now_s();
	if (unmap(&e, IOVA, BIG))
		return 1;
	double t3 = now_s();
	close_edu(&e);
	printf("vfio-map-bench: 4k %.0f/s (%lu in %.1f s); 2m %.0f/s (%lu in %.1f s); 64m map %.1f ms, unmap %.1f ms\n",
	       r4, n4, t4, r2, n2, t2, (t1 - t0) * 1e3, (t3 - t1) * 1e3);
	return 0;
}
