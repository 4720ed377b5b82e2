package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeFile writes b to dir/name, creating folders.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func encodePNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// grayImage is a w×h gray image whose pixel (x, y) is f(x, y).
func grayImage(w, h int, f func(x, y int) uint8) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetGray(x, y, color.Gray{Y: f(x, y)})
		}
	}
	return m
}

// solid is a w×h opaque image of one colour.
func solid(w, h int, c color.NRGBA) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA(x, y, c)
		}
	}
	return m
}

func near(a, b float32) bool { return math.Abs(float64(a-b)) <= 1.0/255 }

func TestDecodeImageGrayExact(t *testing.T) {
	m := grayImage(4, 3, func(x, y int) uint8 { return uint8(20*y + x) })
	x, err := DecodeImage(nil, bytes.NewReader(encodePNG(t, m)), ImageOptions{Width: 4, Height: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != 12 {
		t.Fatalf("%d values, want 12", len(x))
	}
	for y := range 3 {
		for c := range 4 {
			if want := float32(20*y+c) / 255; x[y*4+c] != want {
				t.Fatalf("pixel (%d,%d) = %v, want %v (row-major, scaled to [0,1])", c, y, x[y*4+c], want)
			}
		}
	}
}

func TestDecodeImageChannels(t *testing.T) {
	red := solid(2, 2, color.NRGBA{R: 255, A: 255})
	tests := []struct {
		name     string
		img      image.Image
		channels int
		want     []float32 // first value of each channel plane
	}{
		{"rgb to rgb", red, 3, []float32{1, 0, 0}},
		{"rgb to gray (luma)", red, 1, []float32{float32((19595*255+1<<15)>>16) / 255}},
		{"gray to rgb", grayImage(2, 2, func(int, int) uint8 { return 51 }), 3, []float32{0.2, 0.2, 0.2}},
		{"transparent on black", solid(2, 2, color.NRGBA{R: 255, G: 255, B: 255, A: 0}), 1, []float32{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := DecodeImage(nil, bytes.NewReader(encodePNG(t, tt.img)), ImageOptions{Width: 2, Height: 2, Channels: tt.channels})
			if err != nil {
				t.Fatal(err)
			}
			if len(x) != 4*tt.channels {
				t.Fatalf("%d values, want %d", len(x), 4*tt.channels)
			}
			for c, want := range tt.want {
				for i := range 4 {
					if got := x[c*4+i]; !near(got, want) {
						t.Fatalf("channel %d value %d = %v, want %v (channels first)", c, i, got, want)
					}
				}
			}
		})
	}
}

func TestDecodeImageResize(t *testing.T) {
	// Left half black, right half white, 64×32 → 8×4: Catmull-Rom keeps
	// the halves apart and each row alike.
	m := grayImage(64, 32, func(x, _ int) uint8 {
		if x < 32 {
			return 0
		}
		return 255
	})
	x, err := DecodeImage(nil, bytes.NewReader(encodePNG(t, m)), ImageOptions{Width: 8, Height: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != 32 {
		t.Fatalf("%d values, want 32", len(x))
	}
	for y := range 4 {
		row := x[y*8 : (y+1)*8]
		if !slices.Equal(row, x[:8]) {
			t.Fatalf("row %d %v differs from row 0 %v", y, row, x[:8])
		}
		for c, v := range row {
			if v < 0 || v > 1 {
				t.Fatalf("value %v outside [0,1]", v)
			}
			if (c < 3 && v > 0.05) || (c > 4 && v < 0.95) {
				t.Fatalf("row %v: the halves blur into each other", row)
			}
		}
	}
	// JPEG goes through the same path.
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, solid(40, 30, color.NRGBA{G: 255, A: 255}), &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	x, err = DecodeImage(x[:0], &buf, ImageOptions{Width: 5, Height: 5, Channels: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != 75 || !near(x[0], 0) && x[0] > 0.03 || x[25] < 0.97 || x[50] > 0.03 {
		t.Fatalf("green JPEG → %d values, R %v G %v B %v", len(x), x[0], x[25], x[50])
	}
}

func TestDecodeImageBad(t *testing.T) {
	good := encodePNG(t, grayImage(8, 8, func(x, y int) uint8 { return uint8(x * y) }))
	// A PNG header declaring 100000×100000 pixels: refused from the
	// header, before anything is allocated.
	bomb := encodePNG(t, grayImage(1, 1, func(int, int) uint8 { return 0 }))
	bomb = slices.Clone(bomb)
	copy(bomb[16:24], []byte{0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0})
	binary.BigEndian.PutUint32(bomb[29:33], crc32.ChecksumIEEE(bomb[12:29])) // IHDR's CRC
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrFormat},
		{"text", []byte("hello, world"), ErrFormat},
		{"gif", []byte("GIF89a\x01\x00\x01\x00"), ErrFormat},
		{"truncated png", good[:len(good)/2], ErrFormat}, // "not enough pixel data"
		{"corrupt png", append(slices.Clone(good[:40]), bytes.Repeat([]byte{0x55}, 60)...), ErrFormat},
		{"truncated jpeg", []byte("\xff\xd8\xff\xe0\x00\x10JFIF"), ErrTruncated},
		{"bomb", bomb, ErrLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []float32{7}
			out, err := DecodeImage(dst, bytes.NewReader(tt.b), ImageOptions{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if len(out) != 1 || out[0] != 7 {
				t.Fatalf("dst changed on error: %v", out[:min(len(out), 3)])
			}
		})
	}
}

func TestImageOptionsValidate(t *testing.T) {
	for _, o := range []ImageOptions{
		{Channels: 2}, {Width: -1}, {MaxPixels: -5}, {Width: 4096, Height: 4096, Channels: 3},
		{Classes: []string{"a", "a"}}, {Classes: []string{""}},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	if err := (ImageOptions{Width: 32, Height: 32, Channels: 3, Classes: []string{"cat", "dog"}}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// imageTree writes a small folder-per-class dataset: class c's images are
// solid gray (40·c + k) for k < count[c].
func imageTree(t testing.TB, root string, counts map[string]int) {
	t.Helper()
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	slices.Sort(names)
	for c, n := range names {
		for k := range counts[n] {
			v := uint8(40*c + k)
			writeFile(t, root, filepath.Join(n, "img"+string(rune('a'+k))+".png"), encodePNG(t, grayImage(6, 6, func(int, int) uint8 { return v })))
		}
	}
}

func TestReadImageFolder(t *testing.T) {
	root := t.TempDir()
	imageTree(t, root, map[string]int{"cat": 2, "dog": 3})
	// Skipped: hidden files and folders, other endings, files in root.
	writeFile(t, root, "README.txt", []byte("not an image"))
	writeFile(t, root, "cat/.DS_Store", []byte("junk"))
	writeFile(t, root, "cat/notes.txt", []byte("junk"))
	writeFile(t, root, ".cache/x.png", []byte("junk"))
	// Nested folders count, upper-case endings too, and any size.
	writeFile(t, root, "dog/more/IMG.PNG", encodePNG(t, grayImage(10, 7, func(int, int) uint8 { return 200 })))
	ds, classes, err := ReadImageFolder(root, ImageOptions{Width: 3, Height: 3, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(classes, []string{"cat", "dog"}) {
		t.Fatalf("classes %q", classes)
	}
	if err := ds.Validate(); err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 6 || ds.Classes != 2 || !slices.Equal(ds.Shape, []int{1, 3, 3}) {
		t.Fatalf("%d examples, %d classes, shape %v; want 6, 2, [1 3 3]", ds.Len(), ds.Classes, ds.Shape)
	}
	wantY := []int32{0, 0, 1, 1, 1, 1}
	wantV := []float32{0, 1, 40, 41, 42, 200}
	if !slices.Equal(ds.Y, wantY) {
		t.Fatalf("labels %v, want %v", ds.Y, wantY)
	}
	for i, v := range wantV {
		// A solid image stays solid through Catmull-Rom.
		if got := ds.Row(i)[4]; !near(got, v/255) {
			t.Fatalf("example %d: %v, want %v", i, got*255, v)
		}
	}
}

func TestReadImageFolderClasses(t *testing.T) {
	root := t.TempDir()
	imageTree(t, root, map[string]int{"cat": 1, "dog": 1})
	// Fixed classes: their order wins, a class without a folder is
	// allowed (this host lacks birds), labels follow the fixed order.
	ds, classes, err := ReadImageFolder(root, ImageOptions{Classes: []string{"dog", "bird", "cat"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(classes, []string{"dog", "bird", "cat"}) || ds.Classes != 3 {
		t.Fatalf("classes %q (%d)", classes, ds.Classes)
	}
	if !slices.Equal(ds.Y, []int32{0, 2}) {
		t.Fatalf("labels %v, want [0 2] (dog first)", ds.Y)
	}
	if got := ds.Row(0)[0]; !near(got, 40.0/255) {
		t.Fatalf("first example is not the dog: %v", got*255)
	}
	// A folder that is not a fixed class is an error naming it.
	_, _, err = ReadImageFolder(root, ImageOptions{Classes: []string{"cat"}})
	if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), filepath.Join(root, "dog")) {
		t.Fatalf("err = %v, want ErrMismatch naming the dog folder", err)
	}
}

func TestReadImageFolderErrors(t *testing.T) {
	t.Run("bad file named", func(t *testing.T) {
		root := t.TempDir()
		imageTree(t, root, map[string]int{"a": 3, "b": 3})
		bad := writeFile(t, root, "b/broken.jpg", []byte("\xff\xd8\xff not really"))
		ds, classes, err := ReadImageFolder(root, ImageOptions{})
		if ds != nil || classes != nil {
			t.Fatal("half-loaded dataset returned with an error")
		}
		if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), bad) {
			t.Fatalf("err = %v, want a decode error naming %s", err, bad)
		}
	})
	t.Run("too many files", func(t *testing.T) {
		root := t.TempDir()
		imageTree(t, root, map[string]int{"a": 3, "b": 3})
		_, _, err := ReadImageFolder(root, ImageOptions{MaxImages: 5})
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("err = %v, want ErrLimit", err)
		}
		if _, _, err := ReadImageFolder(root, ImageOptions{MaxImages: 6}); err != nil {
			t.Fatalf("6 files under a bound of 6: %v", err)
		}
	})
	t.Run("too many pixels", func(t *testing.T) {
		root := t.TempDir()
		imageTree(t, root, map[string]int{"a": 1}) // 6×6 = 36 pixels
		_, _, err := ReadImageFolder(root, ImageOptions{MaxPixels: 35})
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "a/imga.png") {
			t.Fatalf("err = %v, want ErrLimit naming the file", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		root := t.TempDir()
		if _, _, err := ReadImageFolder(root, ImageOptions{}); !errors.Is(err, ErrFormat) {
			t.Fatalf("no class folders: err = %v", err)
		}
		writeFile(t, root, "a/x.txt", nil)
		if _, _, err := ReadImageFolder(root, ImageOptions{}); !errors.Is(err, ErrFormat) {
			t.Fatalf("no images: err = %v", err)
		}
		if _, _, err := ReadImageFolder(filepath.Join(root, "missing"), ImageOptions{}); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("missing root: err = %v", err)
		}
	})
}

func FuzzDecodeImage(f *testing.F) {
	f.Add(encodePNG(f, grayImage(3, 2, func(x, y int) uint8 { return uint8(x + y) })))
	f.Add(encodePNG(f, solid(5, 4, color.NRGBA{R: 9, G: 200, B: 30, A: 128})))
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, solid(9, 7, color.NRGBA{R: 255, A: 255}), nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := DecodeImage(nil, bytes.NewReader(b), ImageOptions{Width: 4, Height: 4, Channels: 3, MaxPixels: 1 << 16})
		if err != nil {
			if !sentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if len(x) != 48 {
			t.Fatalf("%d values, want 48", len(x))
		}
		for _, v := range x {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("value %v outside [0,1]", v)
			}
		}
	})
}
