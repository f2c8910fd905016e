/*
 * edu-test: DMA pages (mlock()ed, below the 28-bit DMA mask, physical addresses from
 * /proc/self/pagemap) and MSI counting with the perf tracepoint (see edu_test.c).
 */
#include "edu_test.h"

/* --- The failure reason and the clock every edu program shares --- */

char reason[256];

int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	return -1;
}

uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* --- DMA pages --- */


static int virt_to_phys(int pagemap, const void *va, uint64_t *pa)
{
	uint64_t e;
	off_t off = (off_t)((uintptr_t)va / PAGE) * 8;
	if (pread(pagemap, &e, 8, off) != 8)
		return fail("pagemap read: %s", strerror(errno));
	if (!(e & (1ULL << 63)))
		return fail("page %p not present in pagemap", va);
	uint64_t pfn = e & ((1ULL << 55) - 1);
	if (pfn == 0)
		return fail("pagemap shows PFN 0 (need root/CAP_SYS_ADMIN)");
	*pa = pfn * PAGE;
	return 0;
}

/*
 * Finds `n` locked pages below the edu DMA mask. Allocates chunks of locked
 * memory until enough low pages turn up; the rest stays mapped until exit.
 */
int alloc_low_pages(struct dma_page *pages, int n)
{
	/* Locked pages could still be moved by compaction; ask the kernel not to. */
	int fd = open("/proc/sys/vm/compact_unevictable_allowed", O_WRONLY);
	if (fd >= 0) {
		(void)!write(fd, "0", 1);
		close(fd);
	}
	int pagemap = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap < 0)
		return fail("open /proc/self/pagemap: %s", strerror(errno));
	int found = 0;
	size_t chunk = 64 * PAGE;
	for (int tries = 0; found < n && tries < 12; tries++, chunk *= 2) {
		uint8_t *m = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			break;
		if (mlock(m, chunk) != 0) {
			close(pagemap);
			return fail("mlock %zu KiB: %s", chunk / 1024, strerror(errno));
		}
		for (size_t off = 0; off < chunk && found < n; off += PAGE) {
			uint64_t pa = 0;
			if (virt_to_phys(pagemap, m + off, &pa)) {
				close(pagemap);
				return -1;
			}
			if (pa + PAGE - 1 <= EDU_DMA_MASK) {
				pages[found].va = m + off;
				pages[found].pa = pa;
				found++;
			}
		}
	}
	close(pagemap);
	if (found < n)
		return fail("no locked pages below 256 MiB (edu DMA mask) found");
	return 0;
}

/* --- MSI counting with the perf tracepoint --- */

#define MAX_CPUS 64
static int perf_fds[MAX_CPUS];
static int n_perf_fds;

int open_msi_counter(void)
{
	const char *ids[] = {"/sys/kernel/tracing/events/" TRACEPOINT "/id",
			     "/sys/kernel/debug/tracing/events/" TRACEPOINT "/id"};
	long id = -1;
	for (int i = 0; i < 2 && id < 0; i++) {
		FILE *f = fopen(ids[i], "r");
		if (f) {
			if (fscanf(f, "%ld", &id) != 1)
				id = -1;
			fclose(f);
		}
	}
	if (id < 0) {
		mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL);
		FILE *f = fopen(ids[0], "r");
		if (f) {
			if (fscanf(f, "%ld", &id) != 1)
				id = -1;
			fclose(f);
		}
	}
	if (id < 0)
		return fail("no tracepoint " TRACEPOINT " (tracefs/CONFIG_TRACEPOINTS?)");
	long ncpu = sysconf(_SC_NPROCESSORS_CONF);
	for (long cpu = 0; cpu < ncpu && cpu < MAX_CPUS; cpu++) {
		struct perf_event_attr a;
		memset(&a, 0, sizeof a);
		a.size = sizeof a;
		a.type = PERF_TYPE_TRACEPOINT;
		a.config = (uint64_t)id;
		int fd = (int)syscall(SYS_perf_event_open, &a, -1, (int)cpu, -1, 0);
		if (fd < 0) {
			if (errno == ENODEV || errno == EINVAL)
				continue; /* offline CPU */
			return fail("perf_event_open(" TRACEPOINT ", cpu %ld): %s", cpu, strerror(errno));
		}
		perf_fds[n_perf_fds++] = fd;
	}
	if (n_perf_fds == 0)
		return fail("perf_event_open(" TRACEPOINT ") failed on every CPU");
	return 0;
}

uint64_t msi_count(void)
{
	uint64_t sum = 0;
	for (int i = 0; i < n_perf_fds; i++) {
		uint64_t v = 0;
		if (read(perf_fds[i], &v, sizeof v) == sizeof v)
			sum += v;
	}
	return sum;
}

/* Waits until the MSI count reaches `want` or `timeout_us` passes. */
uint64_t wait_msi(uint64_t want, uint64_t timeout_us)
{
	uint64_t t0 = now_us(), c;
	while ((c = msi_count()) < want && now_us() - t0 < timeout_us)
		usleep(100);
	return c;
}

void close_msi_counter(void)
{
	for (int i = 0; i < n_perf_fds; i++)
		close(perf_fds[i]);
	n_perf_fds = 0;
}
