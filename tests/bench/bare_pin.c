/*
 * bare_pin: the baseline of scripts/bench-pin. The least a VMM must do to pin guest RAM for
 * a device: allocate it the way pinless does (memfd, MAP_SHARED; hugetlbfs 2 MiB pages or
 * MADV_HUGEPAGE when asked), open the DMA backend with one edu device in it, and map the
 * whole buffer with ONE ioctl (type1 VFIO_IOMMU_MAP_DMA or iommufd IOMMU_IOAS_MAP) at
 * IOVA 0. Plain C, no pinless library: only the shared uapi header.
 * Prints one line of key=value pairs; times are CLOCK_MONOTONIC microseconds around the
 * ioctl. Measurements only.
 *
 *   bare_pin --backend type1|iommufd --bdf BDF --size BYTES --backing 4k|thp|hugetlb [--no-attach]
 *
 * --no-attach (iommufd only): map into an IOAS no device is attached to (to check whether
 * the kernel pins then: the printed pinned_kb says).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <linux/vfio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "pinless/iommu/uapi/iommufd.h"

static void die(const char* what) {
  fprintf(stderr, "bare_pin: %s: %s\n", what, strerror(errno));
  exit(1);
}

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A "Key:   N kB" line of a /proc file, in kB (0 if absent). */
static long proc_kb(const char* file, const char* key) {
  FILE* f = fopen(file, "r");
  char line[256];
  long v = 0;
  size_t n = strlen(key);
  if (!f) return 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, n) == 0 && line[n] == ':') {
      v = strtol(line + n + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

static int sysfs_link_tail(const char* bdf, const char* link, char* out, size_t len) {
  char path[256], buf[256];
  snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/%s", bdf, link);
  ssize_t n = readlink(path, buf, sizeof buf - 1);
  if (n < 0) return -1;
  buf[n] = 0;
  const char* tail = strrchr(buf, '/');
  snprintf(out, len, "%s", tail ? tail + 1 : buf);
  return 0;
}

struct backend {
  int fd;        /* container or iommufd */
  int other_fd;  /* group or device cdev */
  uint32_t ioas;
};

static void open_type1(struct backend* b, const char* bdf) {
  char group[256], path[320];
  if (sysfs_link_tail(bdf, "iommu_group", group, sizeof group) < 0) die("iommu_group link");
  b->fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  if (b->fd < 0) die("open /dev/vfio/vfio");
  snprintf(path, sizeof path, "/dev/vfio/%s", group);
  b->other_fd = open(path, O_RDWR | O_CLOEXEC);
  if (b->other_fd < 0) die(path);
  if (ioctl(b->other_fd, VFIO_GROUP_SET_CONTAINER, &b->fd) < 0) die("VFIO_GROUP_SET_CONTAINER");
  if (ioctl(b->fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0) die("VFIO_SET_IOMMU");
}

static void open_iommufd(struct backend* b, const char* bdf, int attach) {
  b->fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
  if (b->fd < 0) die("open /dev/iommu");
  struct iommu_ioas_alloc alloc = {.size = sizeof alloc};
  if (ioctl(b->fd, IOMMU_IOAS_ALLOC, &alloc) < 0) die("IOMMU_IOAS_ALLOC");
  b->ioas = alloc.out_ioas_id;
  b->other_fd = -1;
  if (!attach) return;
  char cdev[256] = "", dir[256], path[320];
  /* /sys/bus/pci/devices/BDF/vfio-dev/ holds one entry: vfioN, the name of the cdev. */
  snprintf(dir, sizeof dir, "/sys/bus/pci/devices/%s/vfio-dev", bdf);
  DIR* d = opendir(dir);
  if (!d) die(dir);
  for (struct dirent* e; (e = readdir(d)) != NULL;) {
    if (strncmp(e->d_name, "vfio", 4) == 0) snprintf(cdev, sizeof cdev, "%s", e->d_name);
  }
  closedir(d);
  if (!cdev[0]) {
    errno = ENODEV;
    die("no VFIO cdev for the device (kernel without CONFIG_VFIO_DEVICE_CDEV?)");
  }
  snprintf(path, sizeof path, "/dev/vfio/devices/%s", cdev);
  b->other_fd = open(path, O_RDWR | O_CLOEXEC);
  if (b->other_fd < 0) die(path);
  struct vfio_device_bind_iommufd bind = {.argsz = sizeof bind, .iommufd = b->fd};
  if (ioctl(b->other_fd, VFIO_DEVICE_BIND_IOMMUFD, &bind) < 0) die("VFIO_DEVICE_BIND_IOMMUFD");
  struct vfio_device_attach_iommufd_pt at = {.argsz = sizeof at, .pt_id = b->ioas};
  if (ioctl(b->other_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at) < 0) die("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
}

static void* alloc_ram(uint64_t size, const char* backing) {
  int huge = strcmp(backing, "hugetlb") == 0;
  int fd = memfd_create("bare-guest-ram", huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0);
  if (fd < 0) die("memfd_create");
  if (ftruncate(fd, (off_t)size) < 0) die("ftruncate");
  void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) die("mmap (hugetlb: nr_hugepages too low?)");
  close(fd);
  if (strcmp(backing, "thp") == 0 && madvise(p, size, MADV_HUGEPAGE) < 0) die("madvise(MADV_HUGEPAGE)");
  return p;
}

int main(int argc, char** argv) {
  const char *backend = NULL, *bdf = NULL, *backing = "4k";
  uint64_t size = 0;
  int attach = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
    else if (!strcmp(argv[i], "--bdf") && i + 1 < argc) bdf = argv[++i];
    else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = strtoull(argv[++i], NULL, 0);
    else if (!strcmp(argv[i], "--backing") && i + 1 < argc) backing = argv[++i];
    else if (!strcmp(argv[i], "--no-attach")) attach = 0;
    else {
      fprintf(stderr, "usage: bare_pin --backend type1|iommufd --bdf BDF --size BYTES "
                      "--backing 4k|thp|hugetlb [--no-attach]\n");
      return 2;
    }
  }
  if (!backend || (!bdf && attach) || size == 0) {
    fprintf(stderr, "bare_pin: --backend, --bdf and --size are required\n");
    return 2;
  }
  int type1 = strcmp(backend, "type1") == 0;
  struct backend b = {-1, -1, 0};
  if (type1) open_type1(&b, bdf);
  else open_iommufd(&b, bdf, attach);
  void* ram = alloc_ram(size, backing);

  long lck0 = proc_kb("/proc/self/status", "VmLck"), pin0 = proc_kb("/proc/self/status", "VmPin");
  uint64_t t0 = now_us();
  if (type1) {
    struct vfio_iommu_type1_dma_map m = {.argsz = sizeof m,
                                         .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                                         .vaddr = (uint64_t)(uintptr_t)ram, .iova = 0, .size = size};
    if (ioctl(b.fd, VFIO_IOMMU_MAP_DMA, &m) < 0) die("VFIO_IOMMU_MAP_DMA");
  } else {
    struct iommu_ioas_map m = {.size = sizeof m,
                               .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
                                        IOMMU_IOAS_MAP_WRITEABLE,
                               .ioas_id = b.ioas, .user_va = (uint64_t)(uintptr_t)ram,
                               .length = size, .iova = 0};
    if (ioctl(b.fd, IOMMU_IOAS_MAP, &m) < 0) die("IOMMU_IOAS_MAP");
  }
  uint64_t t1 = now_us();
  long pinned = proc_kb("/proc/self/status", "VmLck") - lck0 + proc_kb("/proc/self/status", "VmPin") - pin0;
  long huge = proc_kb("/proc/self/smaps_rollup", "ShmemPmdMapped") +
              proc_kb("/proc/self/smaps_rollup", "Shared_Hugetlb") +
              proc_kb("/proc/self/smaps_rollup", "Private_Hugetlb");
  uint64_t t2 = now_us();
  if (type1) {
    struct vfio_iommu_type1_dma_unmap u = {.argsz = sizeof u, .iova = 0, .size = size};
    if (ioctl(b.fd, VFIO_IOMMU_UNMAP_DMA, &u) < 0) die("VFIO_IOMMU_UNMAP_DMA");
  } else {
    struct iommu_ioas_unmap u = {.size = sizeof u, .ioas_id = b.ioas, .iova = 0, .length = size};
    if (ioctl(b.fd, IOMMU_IOAS_UNMAP, &u) < 0) die("IOMMU_IOAS_UNMAP");
  }
  uint64_t t3 = now_us();
  printf("side=bare backend=%s backing=%s size=%llu pin_us=%llu populate_us=0 map_us=%llu map_calls=1 "
         "threads=0 unmap_us=%llu pinned_kb=%ld huge_kb=%ld\n",
         backend, backing, (unsigned long long)size, (unsigned long long)(t1 - t0),
         (unsigned long long)(t1 - t0), (unsigned long long)(t3 - t2), pinned, huge);
  munmap(ram, size);
  if (b.other_fd >= 0) close(b.other_fd);
  close(b.fd);
  return 0;
}
