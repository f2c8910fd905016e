// Include this instead of <linux/kvm.h> (scripts/lint enforces it).
//
// Why: the 6.1 uapi headers declare flexible arrays with __DECLARE_FLEX_ARRAY, which wraps
// the array in a struct holding an empty struct. In C that empty struct has size 0; in C++
// it has size 1, so in C++ sizeof(struct kvm_cpuid2) is 12 instead of 8, `entries` sits at
// offset 12 instead of 8, and every ioctl number that encodes such a struct's size
// (KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2, KVM_GET/SET_MSRS, KVM_SET_GSI_ROUTING, ...) is
// wrong: the kernel answers EINVAL. Later kernels define the macro as `T member[0]` for C++;
// we do the same before the KVM headers are read.
#pragma once

#include <linux/stddef.h>

#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]

#include <linux/kvm.h>

static_assert(sizeof(struct kvm_cpuid2) == 8, "kvm_cpuid2 layout must match the kernel's");
static_assert(sizeof(struct kvm_msrs) == 8, "kvm_msrs layout must match the kernel's");
static_assert(sizeof(struct kvm_msr_list) == 4, "kvm_msr_list layout must match the kernel's");
static_assert(sizeof(struct kvm_irq_routing) == 8, "kvm_irq_routing layout must match the kernel's");
static_assert(sizeof(struct kvm_signal_mask) == 4, "kvm_signal_mask layout must match the kernel's");
static_assert(KVM_GET_SUPPORTED_CPUID == 0xc008ae05, "KVM_GET_SUPPORTED_CPUID must encode size 8");
