/*
 * The guest-side VFIO helpers shared by vfio-edu and vfio-map-bench: edu devices found in
 * sysfs, each bound to vfio-pci and given a type1 container of its own (one guest IOMMU
 * domain), its BAR0 mapped and bus mastering on; MAP/UNMAP; one edu DMA.
 */
#ifndef PINLESS_VFIO_GUEST_H
#define PINLESS_VFIO_GUEST_H

#include <linux/vfio.h>

#include "edu_test.h" /* the edu register map */

struct edu {
	char bdf[256];
	char group_id[32];
	int container, group, dev;
	volatile uint8_t *bar;
	size_t bar_size;
	off_t cfg;
};

/* The program's name, for "NAME: FAIL: reason" lines. */
extern const char *prog;
/* Prints "PROG: FAIL: reason" and returns 1 (an exit status). */
int die(const char *fmt, ...);
/* Up to `max` edu devices, in directory order; returns how many. */
int find_edus(struct edu *out, int max);
/* Binds `e` to vfio-pci, gives its group a container of its own, maps BAR0, bus master on.
 * 0, or die()'s 1. */
int open_edu(struct edu *e);
void close_edu(struct edu *e);
/* VFIO_IOMMU_MAP_DMA / UNMAP_DMA on e's container: 0, or die()'s 1. */
int map(struct edu *e, void *va, uint64_t iova, uint64_t size);
int unmap(struct edu *e, uint64_t iova, uint64_t size);
/* Runs one edu DMA and waits (1 s at most) for it to finish: 0, or -1. */
int edu_dma(volatile uint8_t *bar, uint64_t src, uint64_t dst, uint32_t count, uint32_t cmd);

#endif
