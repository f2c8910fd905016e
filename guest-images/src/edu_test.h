/*
 * edu-test, shared between its files: the edu register map, the DMA-page and MSI-counting
 * helpers and the failure reason (both in edu_dma_msi.c, linked into edu-test and hostile).
 */
#ifndef PINLESS_EDU_TEST_H
#define PINLESS_EDU_TEST_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EDU_VENDOR 0x1234
#define EDU_DEVICE 0x11e8
#define EDU_ID 0x00
#define EDU_ID_VALUE 0x010000ed
#define EDU_LIVENESS 0x04
#define EDU_IRQ_STATUS 0x24
#define EDU_IRQ_RAISE 0x60
#define EDU_IRQ_ACK 0x64
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_DMA_START 0x1
#define EDU_DMA_TO_RAM 0x2
#define EDU_DMA_IRQ 0x4
#define EDU_DMA_IRQ_STATUS 0x100
#define EDU_BUFFER 0x40000
#define EDU_DMA_MASK ((1ULL << 28) - 1)

#define MSI_VECTOR 0xf7 /* X86_PLATFORM_IPI_VECTOR */
#define MSI_ADDRESS 0xfee00000u /* LAPIC, destination ID 0, physical mode */
#define TRACEPOINT "irq_vectors/x86_platform_ipi_entry"

#define PAGE 4096


/* The last failure, for the one-line report; fail() formats it and returns -1. */
extern char reason[256];
int fail(const char *fmt, ...);
uint64_t now_us(void);

/* --- DMA pages --- */

struct dma_page {
	uint8_t *va;
	uint64_t pa;
};

/* n mlock()ed pages below edu's 28-bit DMA mask, with their physical addresses. */
int alloc_low_pages(struct dma_page *pages, int n);

/* MSI counting through the x86_platform_ipi tracepoint on every CPU. */
int open_msi_counter(void);
uint64_t msi_count(void);
uint64_t wait_msi(uint64_t want, uint64_t timeout_us);
void close_msi_counter(void);

#endif
