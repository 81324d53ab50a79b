#pragma once
/// \file
/// The one place that includes xtensor and BLAS. (The C header <cblas.h> cannot be
/// included next to xtensor-blas, whose bundled headers already declare the cblas_*
/// functions; this header takes those declarations.)

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xfixed.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor-blas/xblas.hpp>
