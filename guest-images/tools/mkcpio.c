/*
 * mkcpio: writes a reproducible newc cpio archive (the initramfs format) to stdout
 * from a manifest, without needing root or touching the host filesystem
 * (device nodes such as /dev/console are synthesized).
 *
 * Manifest lines (blank lines and lines starting with '#' are ignored):
 *   dir   PATH MODE
 *   file  PATH SOURCE MODE
 *   slink PATH TARGET MODE
 *   nod   PATH MODE c|b MAJOR MINOR
 * PATH has no leading '/'; MODE is octal permission bits.
 *
 * Reproducibility: entries are sorted by path (a parent sorts before its
 * children), owner 0:0, mtime 0, inode numbers assigned in order, no device
 * numbers of the build machine. Same manifest + same file contents = same bytes.
 * Host-side build tool; thread-compatible, single-shot.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct entry {
	char *path;
	char *source; /* file: source path; slink: target */
	unsigned mode; /* including S_IF* type */
	unsigned rmajor, rminor;
};

static struct entry *entries;
static size_t n_entries, cap_entries;
static unsigned long long out_bytes;

static void die(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "mkcpio: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	exit(1);
}

static void put(const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, stdout) != n)
		die("write failed: %s", strerror(errno), "");
	out_bytes += n;
}

static void pad4(void)
{
	static const char zeros[4];
	put(zeros, (4 - out_bytes % 4) % 4);
}

static void header(unsigned ino, unsigned mode, unsigned nlink, unsigned long size,
		   unsigned rmajor, unsigned rminor, const char *name)
{
	char h[128];
	size_t namesize = strlen(name) + 1;
	if (size > 0xffffffffUL || namesize > 4096)
		die("entry too large: %s%s", name, "");
	snprintf(h, sizeof h, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		 ino, mode, 0u, 0u, nlink, 0u, (unsigned)size, 0u, 0u, rmajor, rminor,
		 (unsigned)namesize, 0u);
	put(h, 110);
	put(name, namesize);
	pad4();
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

static unsigned parse_mode(const char *s, const char *line)
{
	char *end;
	unsigned long m = strtoul(s ? s : "", &end, 8);
	if (!s || *end || m > 07777)
		die("bad mode in line: %s%s", line, "");
	return (unsigned)m;
}

static void add(struct entry e)
{
	if (n_entries == cap_entries) {
		cap_entries = cap_entries ? cap_entries * 2 : 64;
		entries = realloc(entries, cap_entries * sizeof *entries);
		if (!entries)
			die("out of memory%s%s", "", "");
	}
	entries[n_entries++] = e;
}

static void read_manifest(FILE *f)
{
	char line[4096];
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char copy[4096];
		strcpy(copy, line);
		char *kind = strtok(line, " \t");
		if (!kind || kind[0] == '#')
			continue;
		char *path = strtok(NULL, " \t");
		if (!path || path[0] == '/')
			die("bad path in line: %s%s", copy, "");
		struct entry e = {.path = strdup(path)};
		if (!strcmp(kind, "dir")) {
			e.mode = S_IFDIR | parse_mode(strtok(NULL, " \t"), copy);
		} else if (!strcmp(kind, "file")) {
			char *src = strtok(NULL, " \t");
			if (!src)
				die("missing source in line: %s%s", copy, "");
			e.source = strdup(src);
			e.mode = S_IFREG | parse_mode(strtok(NULL, " \t"), copy);
		} else if (!strcmp(kind, "slink")) {
			char *target = strtok(NULL, " \t");
			if (!target)
				die("missing target in line: %s%s", copy, "");
			e.source = strdup(target);
			e.mode = S_IFLNK | parse_mode(strtok(NULL, " \t"), copy);
		} else if (!strcmp(kind, "nod")) {
			unsigned perm = parse_mode(strtok(NULL, " \t"), copy);
			char *type = strtok(NULL, " \t");
			char *maj = strtok(NULL, " \t"), *min = strtok(NULL, " \t");
			if (!type || !maj || !min || (strcmp(type, "c") && strcmp(type, "b")))
				die("bad device node line: %s%s", copy, "");
			e.mode = (type[0] == 'c' ? S_IFCHR : S_IFBLK) | perm;
			e.rmajor = (unsigned)strtoul(maj, NULL, 10);
			e.rminor = (unsigned)strtoul(min, NULL, 10);
		} else {
			die("unknown entry kind '%s' in line: %s", kind, copy);
		}
		add(e);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mkcpio MANIFEST > archive.cpio\n");
		return 2;
	}
	FILE *m = fopen(argv[1], "r");
	if (!m)
		die("cannot open manifest %s: %s", argv[1], strerror(errno));
	read_manifest(m);
	fclose(m);
	qsort(entries, n_entries, sizeof *entries, by_path);
	for (size_t i = 0; i + 1 < n_entries; i++)
		if (!strcmp(entries[i].path, entries[i + 1].path))
			die("duplicate path %s%s", entries[i].path, "");

	unsigned ino = 721; /* arbitrary fixed start */
	for (size_t i = 0; i < n_entries; i++, ino++) {
		struct entry *e = &entries[i];
		if (S_ISREG(e->mode)) {
			FILE *f = fopen(e->source, "rb");
			if (!f)
				die("cannot open %s: %s", e->source, strerror(errno));
			fseek(f, 0, SEEK_END);
			long size = ftell(f);
			fseek(f, 0, SEEK_SET);
			char *buf = malloc(size ? (size_t)size : 1);
			if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size)
				die("cannot read %s%s", e->source, "");
			fclose(f);
			header(ino, e->mode, 1, (unsigned long)size, 0, 0, e->path);
			put(buf, (size_t)size);
			pad4();
			free(buf);
		} else if (S_ISLNK(e->mode)) {
			size_t len = strlen(e->source);
			header(ino, e->mode, 1, len, 0, 0, e->path);
			put(e->source, len);
			pad4();
		} else {
			header(ino, e->mode, S_ISDIR(e->mode) ? 2 : 1, 0, e->rmajor, e->rminor, e->path);
		}
	}
	header(0, 0, 1, 0, 0, 0, "TRAILER!!!");
	if (fflush(stdout) != 0)
		die("write failed: %s%s", strerror(errno), "");
	return 0;
}
