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
#include "vfio_guest.h"

#define IOVA 0x1000000ull      /* 16 MiB: not the buffer's guest-physical address */
#define X_SIZE (16ull << 20)   /* large enough to see in the host's pin count */
#define Y_SIZE (64ull << 10)
#define SHARED_IOVA 0x2000000ull
#define UNMAPPED_IOVA 0x3000000ull
#define BYTES 4000u
#define HOLD_S 2 /* seconds per phase, for whoever samples the host's pins */

const char *prog = "vfio-edu";

static void phase(const char *what)
{
	printf("vfio-edu: %s\n", what);
	fflush(stdout);
	sleep(HOLD_S);
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
